package io.walship.compat;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.LocalTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.types.RowKind;
import org.apache.flink.util.CloseableIterator;

/**
 * Runs Flink SQL in a local mini-cluster over Kafka topics and prints what each query's
 * changelog materializes to: the rows a table holds once every change has been applied.
 *
 * <pre>
 * FlinkChangelog [--parallelism N] [--set key=value]... [--sql STATEMENT]...
 *                [--collect NAME=QUERY]... [--explain QUERY]... [--out FILE]
 * </pre>
 *
 * <p>The steps run in the order given. {@code --set} sets a table configuration option
 * ({@code table.exec.source.cdc-events-duplicate}, ...) for what follows; {@code --sql} runs a
 * statement (the {@code CREATE TABLE}s of the Kafka sources; an {@code INSERT} runs its job to
 * the end); {@code --explain} prints a query's plan. Each {@code --collect} runs its query as one
 * streaming job (the sources should be bounded: {@code 'scan.bounded.mode' = 'latest-offset'})
 * and reads its changelog through
 * {@link TableResult#collect()}. The changelog is applied the way Flink's SQL client shows a
 * table result: {@code +I} and {@code +U} add their row, {@code -U} and {@code -D} take away one
 * equal row. A retraction of a row the table does not hold is an anomaly, listed in the output
 * (the SQL client would silently ignore it).
 *
 * <p>Output: one JSON object per {@code --collect}, one line each:
 * {@code {"name":..., "ok":true, "columns":[...], "rows":[[...],...], "kinds":{"+I":n,...},
 * "anomalies":[...]}}, or {@code {"name":..., "ok":false, "error":"..."}} when the job failed
 * (every cause in the chain, outermost first); {@code {"sql":..., "ok":...}} after an
 * {@code INSERT}, {@code {"explain":..., "plan":...}} for {@code --explain}. Values: numbers as JSON numbers, DECIMAL as a
 * string, TIMESTAMP_LTZ as {@code 2024-01-02T03:04:05.123456Z}, TIMESTAMP as
 * {@code 2024-01-02T03:04:05.123456}, DATE as {@code 2024-01-02}, bytes as base64, ARRAY and
 * ROW as JSON arrays.
 *
 * <p>Exit status 0 when every job ran (failed or not); 2 for bad arguments.
 */
public final class FlinkChangelog {

    private static final DateTimeFormatter MICROS =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSSSS");

    private FlinkChangelog() {}

    public static void main(String[] args) throws Exception {
        int parallelism = 1;
        String outFile = null;
        List<String[]> steps = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                usage("missing value after " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--parallelism":
                    parallelism = Integer.parseInt(v);
                    break;
                case "--out":
                    outFile = v;
                    break;
                case "--set":
                case "--collect":
                    if (v.indexOf('=') <= 0) {
                        usage(a + " takes NAME=VALUE, not " + v);
                    }
                    steps.add(new String[] {a, v});
                    break;
                case "--sql":
                case "--explain":
                    steps.add(new String[] {a, v});
                    break;
                default:
                    usage("unknown argument " + a);
            }
        }

        // A small local mini-cluster in this JVM: one task manager, as many slots as the
        // parallelism, modest network buffers and managed memory.
        Configuration conf = new Configuration();
        conf.setString("taskmanager.numberOfTaskSlots", Integer.toString(parallelism));
        conf.setString("taskmanager.memory.network.min", "32m");
        conf.setString("taskmanager.memory.network.max", "32m");
        conf.setString("taskmanager.memory.managed.size", "64m");
        conf.setString("rest.bind-address", "127.0.0.1");
        conf.setString("rest.address", "127.0.0.1");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(conf);
        env.setParallelism(parallelism);
        StreamTableEnvironment tenv =
                StreamTableEnvironment.create(
                        env, EnvironmentSettings.newInstance().inStreamingMode().build());
        tenv.getConfig().set("table.local-time-zone", "UTC");

        PrintStream out =
                new PrintStream(
                        outFile == null
                                ? new FileOutputStream(FileDescriptor.out)
                                : Files.newOutputStream(Path.of(outFile)),
                        true,
                        StandardCharsets.UTF_8);
        // In the order given: a setting holds for the statements and queries after it.
        for (String[] step : steps) {
            String v = step[1];
            switch (step[0]) {
                case "--set": {
                    int eq = v.indexOf('=');
                    tenv.getConfig().set(v.substring(0, eq).trim(), v.substring(eq + 1).trim());
                    break;
                }
                case "--sql": {
                    // DDL returns at once; an INSERT runs its job to the end (bounded sources)
                    TableResult r = tenv.executeSql(v);
                    if (r.getJobClient().isPresent()) {
                        String error = null;
                        try {
                            r.await();
                        } catch (Exception e) {
                            error = causes(e);
                        }
                        out.println("{\"sql\":" + quote(v) + ",\"ok\":" + (error == null)
                                + (error == null ? "" : ",\"error\":" + quote(error)) + "}");
                    }
                    break;
                }
                case "--explain":
                    out.println("{\"explain\":" + quote(v) + ",\"plan\":" + quote(tenv.explainSql(v)) + "}");
                    break;
                default: { // --collect
                    int eq = v.indexOf('=');
                    out.println(collect(tenv, v.substring(0, eq).trim(), v.substring(eq + 1)));
                }
            }
            out.flush();
        }
        out.close();
        // The mini-cluster's threads need not outlive the output.
        System.exit(0);
    }

    private static void usage(String why) {
        System.err.println("FlinkChangelog: " + why);
        System.err.println(
                "usage: FlinkChangelog [--parallelism N] [--set key=value]... [--sql STATEMENT]..."
                        + " --collect NAME=QUERY... [--out FILE]");
        System.exit(2);
    }

    /** Runs one query to its end and materializes its changelog. */
    private static String collect(StreamTableEnvironment tenv, String name, String query) {
        StringBuilder json = new StringBuilder();
        json.append("{\"name\":").append(quote(name));
        List<String> columns = new ArrayList<>();
        // the table: each distinct row (as its JSON text) with its multiplicity
        Map<String, Integer> table = new TreeMap<>();
        Map<String, Integer> kinds = new LinkedHashMap<>();
        List<String> anomalies = new ArrayList<>();
        try {
            TableResult result = tenv.executeSql(query);
            columns.addAll(result.getResolvedSchema().getColumnNames());
            try (CloseableIterator<Row> it = result.collect()) {
                while (it.hasNext()) {
                    Row row = it.next();
                    RowKind kind = row.getKind();
                    kinds.merge(kind.shortString(), 1, Integer::sum);
                    String values = values(row);
                    if (kind == RowKind.INSERT || kind == RowKind.UPDATE_AFTER) {
                        table.merge(values, 1, Integer::sum);
                    } else {
                        Integer n = table.get(values);
                        if (n == null) {
                            if (anomalies.size() < 100) {
                                anomalies.add(kind.shortString() + " of a row the table does not hold: " + values);
                            }
                        } else if (n == 1) {
                            table.remove(values);
                        } else {
                            table.put(values, n - 1);
                        }
                    }
                }
            }
        } catch (Throwable t) {
            json.append(",\"ok\":false,\"error\":").append(quote(causes(t)));
            json.append(",\"kinds\":").append(counts(kinds)).append('}');
            return json.toString();
        }
        json.append(",\"ok\":true,\"columns\":[");
        for (int i = 0; i < columns.size(); i++) {
            json.append(i == 0 ? "" : ",").append(quote(columns.get(i)));
        }
        json.append("],\"rows\":[");
        boolean first = true;
        for (Map.Entry<String, Integer> e : table.entrySet()) {
            for (int i = 0; i < e.getValue(); i++) {
                json.append(first ? "" : ",").append(e.getKey());
                first = false;
            }
        }
        json.append("],\"kinds\":").append(counts(kinds)).append(",\"anomalies\":[");
        for (int i = 0; i < anomalies.size(); i++) {
            json.append(i == 0 ? "" : ",").append(quote(anomalies.get(i)));
        }
        json.append("]}");
        return json.toString();
    }

    private static String counts(Map<String, Integer> kinds) {
        StringBuilder b = new StringBuilder("{");
        for (Map.Entry<String, Integer> e : kinds.entrySet()) {
            b.append(b.length() == 1 ? "" : ",").append(quote(e.getKey())).append(':').append(e.getValue());
        }
        return b.append('}').toString();
    }

    /** Every message of the cause chain, outermost first (the format's own reason is deep inside). */
    private static String causes(Throwable t) {
        StringBuilder b = new StringBuilder();
        Map<Throwable, Boolean> seen = new HashMap<>();
        for (Throwable c = t; c != null && seen.put(c, true) == null; c = c.getCause()) {
            if (b.length() > 0) {
                b.append("\n  caused by: ");
            }
            String m = String.valueOf(c.getMessage());
            if (m.length() > 1000) { // the format quotes the whole event: keep its head
                m = m.substring(0, 1000) + "...";
            }
            b.append(c.getClass().getName()).append(": ").append(m);
        }
        return b.toString();
    }

    /** A row's values as a JSON array (without its kind). */
    private static String values(Row row) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < row.getArity(); i++) {
            if (i > 0) {
                b.append(',');
            }
            value(b, row.getField(i));
        }
        return b.append(']').toString();
    }

    private static void value(StringBuilder b, Object v) {
        if (v == null) {
            b.append("null");
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long
                || v instanceof Short || v instanceof Byte) {
            b.append(v);
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                b.append(quote(Double.toString(d)));
            } else {
                b.append(Double.toString(d));
            }
        } else if (v instanceof BigDecimal) {
            b.append(quote(((BigDecimal) v).toPlainString()));
        } else if (v instanceof Instant) {
            b.append(quote(MICROS.format(LocalDateTime.ofInstant((Instant) v, ZoneOffset.UTC)) + "Z"));
        } else if (v instanceof LocalDateTime) {
            b.append(quote(MICROS.format((LocalDateTime) v)));
        } else if (v instanceof LocalDate || v instanceof LocalTime) {
            b.append(quote(v.toString()));
        } else if (v instanceof byte[]) {
            b.append(quote(Base64.getEncoder().encodeToString((byte[]) v)));
        } else if (v instanceof Row) {
            b.append(values((Row) v));
        } else if (v instanceof Object[]) { // ARRAY<...>
            Object[] items = (Object[]) v;
            b.append('[');
            for (int i = 0; i < items.length; i++) {
                if (i > 0) {
                    b.append(',');
                }
                value(b, items[i]);
            }
            b.append(']');
        } else {
            b.append(quote(v.toString()));
        }
    }

    private static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    b.append("\\\"");
                    break;
                case '\\':
                    b.append("\\\\");
                    break;
                case '\n':
                    b.append("\\n");
                    break;
                case '\r':
                    b.append("\\r");
                    break;
                case '\t':
                    b.append("\\t");
                    break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c); // surrogate pairs pass through as they are: valid UTF-8 out
                    }
            }
        }
        return b.append('"').toString();
    }

}
