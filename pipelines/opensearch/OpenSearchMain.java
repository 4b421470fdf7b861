// One OpenSearch node in this JVM, for the OpenSearch pipeline (pipelines/opensearch) and
// its test: single-node discovery, HTTP and transport on 127.0.0.1 only, everything (data,
// logs, config) under the home directory given, the Netty 4 transport/HTTP module loaded
// from the class path as a plugin. walship_opensearch.py compiles this file against the
// jars that pom.xml resolves and runs it:
//
//   java -cp <jars>:<classes> OpenSearchMain <home> <http port> <transport port>
//
// It prints "walship-opensearch: started" when the node answers, and closes the node on
// SIGTERM (a shutdown hook), so the data directory is released before the JVM exits.

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public final class OpenSearchMain {
    /** Node's constructor that takes class-path plugins is protected. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env) {
            super(env, List.of(Netty4Plugin.class), true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: OpenSearchMain <home> <http port> <transport port>");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("config"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
                .put("path.home", home.toString())
                .put("path.data", home.resolve("data").toString())
                .put("path.logs", home.resolve("logs").toString())
                .put("cluster.name", "walship-pipeline")
                .put("node.name", "walship-opensearch")
                .put("network.host", "127.0.0.1")
                .put("http.port", args[1])
                .put("transport.port", args[2])
                .put("discovery.type", "single-node")
                .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
                .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
                // a shared test machine's disk may be fuller than the default watermarks allow
                .put("cluster.routing.allocation.disk.threshold_enabled", false)
                .put("node.processors", 1)
                .build();
        LogConfigurator.configureWithoutConfig(settings);
        Environment env = InternalSettingsPreparer.prepareEnvironment(
                settings, Map.of(), home.resolve("config"), () -> "walship-opensearch");
        Node node = new EmbeddedNode(env);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                System.err.println("walship-opensearch: close: " + e);
            } finally {
                closed.countDown();
            }
        }));
        node.start();
        System.out.println("walship-opensearch: started");
        System.out.flush();
        closed.await();
    }
}
