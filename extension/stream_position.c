/*
 * stream_position.c: where each stream's worker left its slot, kept outside the slot.
 *
 * A stream's slot is an ordinary logical slot: while the stream does not run (stopped,
 * or waiting for its restart after an error), any REPLICATION role may drop it, advance
 * it (pg_replication_slot_advance) or consume from it (pg_logical_slot_get_changes,
 * pg_recvlogical). The changes it skipped would then never reach Kafka, and the stream
 * would carry on as if nothing happened. So a worker that leaves its slot notes the
 * position it confirmed, in $PGDATA/pg_walship/<slot>.position, and the next worker
 * compares: a slot that is gone, or confirmed past that position, was moved by someone
 * else, and the stream stops with an error saying so.
 *
 * The note is removed once a worker has checked it, so that a crash (which leaves no
 * note) never compares against an old one. It records the timeline it was written on:
 * a server promoted from a standby carries its primary's notes in its base backup, and
 * they mean nothing for the slots it has.
 *
 * These functions never ereport: they also run while a failing worker exits. They
 * return false and leave errno set.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "common/file_perm.h"
#include "miscadmin.h"

#include "walship_streams.h"

#define POSITION_DIR "pg_walship"

/* The timeline WAL is written on; 0 on a standby, where no stream runs. */
static TimeLineID current_timeline(void)
{
    return RecoveryInProgress() ? 0 : GetWALInsertionTimeLine();
}

static void position_path(char *path, size_t size, const char *slot_name, const char *suffix)
{
    snprintf(path, size, "%s/%s/%s.position%s", DataDir, POSITION_DIR, slot_name, suffix);
}

static bool fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    bool ok;

    if (fd < 0)
        return false;
    ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Replaces $PGDATA/pg_walship/<slot><suffix> by text, durably (write, fsync, rename). */
static bool write_note(const char *slot_name, const char *suffix, const char *text)
{
    char dir[MAXPGPATH];
    char tmp[MAXPGPATH];
    char path[MAXPGPATH];
    int len = (int)strlen(text);
    int fd;
    bool ok;

    snprintf(dir, sizeof(dir), "%s/%s", DataDir, POSITION_DIR);
    if (mkdir(dir, pg_dir_create_mode) != 0 && errno != EEXIST)
        return false;
    snprintf(path, sizeof(path), "%s/%s%s", dir, slot_name, suffix);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, pg_file_create_mode);
    if (fd < 0)
        return false;
    ok = write(fd, text, len) == len && fsync(fd) == 0;
    if (close(fd) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        int save_errno = errno;

        unlink(tmp);
        errno = save_errno;
        return false;
    }
    return fsync_path(dir, O_RDONLY);
}

bool stream_position_save(const char *slot_name, XLogRecPtr lsn)
{
    char text[256];

    snprintf(text, sizeof(text), "slot %s\nconfirmed %X/%X\ntimeline %u\n", slot_name,
             LSN_FORMAT_ARGS(lsn), current_timeline());
    return write_note(slot_name, ".position", text);
}

bool stream_position_load(const char *slot_name, XLogRecPtr *lsn)
{
    char path[MAXPGPATH];
    char name[NAMEDATALEN + 1];
    FILE *file;
    uint32 hi;
    uint32 lo;
    uint32 timeline;
    int fields;

    position_path(path, sizeof(path), slot_name, "");
    file = fopen(path, "r");
    if (file == NULL)
        return false;
    fields = fscanf(file, "slot %" CppAsString2(NAMEDATALEN) "s confirmed %X/%X timeline %u", name,
                    &hi, &lo, &timeline);
    fclose(file);
    if (fields != 4 || strcmp(name, slot_name) != 0 || timeline != current_timeline())
        return false;
    *lsn = ((uint64)hi << 32) | lo;
    return true;
}

bool stream_position_forget(const char *slot_name)
{
    char dir[MAXPGPATH];
    char path[MAXPGPATH];

    position_path(path, sizeof(path), slot_name, "");
    if (unlink(path) != 0)
        return errno == ENOENT;
    snprintf(dir, sizeof(dir), "%s/%s", DataDir, POSITION_DIR);
    return fsync_path(dir, O_RDONLY);
}

/*
 * Which walship_* slots walship made. create_stream marks each slot it creates with the
 * pid of its backend; drop_stream removes the mark. The launcher drops a marked slot
 * that has no catalog row once its creator is gone (a crash during create_stream, a
 * catalog row deleted by hand, DROP SCHEMA walship CASCADE), and leaves alone the
 * walship_* slots that someone else made.
 */
static void owned_path(char *path, size_t size, const char *slot_name)
{
    snprintf(path, size, "%s/%s/%s.stream", DataDir, POSITION_DIR, slot_name);
}

bool stream_slot_mark_owned(const char *slot_name, int creator_pid)
{
    char text[64];

    snprintf(text, sizeof(text), "creator %d\n", creator_pid);
    return write_note(slot_name, ".stream", text);
}

bool stream_slot_owned(const char *slot_name, int *creator_pid)
{
    char path[MAXPGPATH];
    FILE *file;
    int fields;

    owned_path(path, sizeof(path), slot_name);
    file = fopen(path, "r");
    if (file == NULL)
        return false;
    fields = fscanf(file, "creator %d", creator_pid);
    fclose(file);
    if (fields != 1)
        *creator_pid = 0;
    return true;
}

bool stream_slot_forget_owned(const char *slot_name)
{
    char path[MAXPGPATH];

    owned_path(path, sizeof(path), slot_name);
    return unlink(path) == 0 || errno == ENOENT;
}
