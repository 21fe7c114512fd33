/* make bench-iscsi: sequential WRITE(10)s through libiscsi, `depth` outstanding, for `seconds`
 * (iscsi-perf only reads). Prints one line: "WRITE ios=<n> bytes=<n> seconds=<s>".
 *
 *   iscsi_write <iscsi-url> <blocks per write> <depth> <seconds>
 *
 * Built by scripts/bench/iscsi.py with: cc -O2 -o iscsi_write iscsi_write.c -liscsi
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

struct state {
    struct iscsi_context *iscsi;
    int lun;
    uint32_t blocks, next, capacity;
    unsigned char *data;
    long ios, outstanding, failed;
    int stopping;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void issue(struct state *s);

static void done(struct iscsi_context *iscsi, int status, void *command_data, void *private)
{
    struct state *s = private;
    struct scsi_task *task = command_data;
    (void)iscsi;
    s->outstanding--;
    if (status != SCSI_STATUS_GOOD)
        s->failed++;
    else
        s->ios++;
    scsi_free_scsi_task(task);
    if (!s->stopping)
        issue(s);
}

static void issue(struct state *s)
{
    if (s->next + s->blocks > s->capacity)
        s->next = 0;
    if (iscsi_write10_task(s->iscsi, s->lun, s->next, s->data, s->blocks * 512, 512,
                           0, 0, 0, 0, 0, done, s) == NULL) {
        fprintf(stderr, "write10 failed: %s\n", iscsi_get_error(s->iscsi));
        exit(1);
    }
    s->next += s->blocks;
    s->outstanding++;
}

int main(int argc, char **argv)
{
    struct state s;
    struct iscsi_url *url;
    struct scsi_task *task;
    struct scsi_readcapacity10 *rc;
    double start, seconds;
    int depth, i;

    if (argc != 5) {
        fprintf(stderr, "usage: %s <iscsi-url> <blocks> <depth> <seconds>\n", argv[0]);
        return 2;
    }
    memset(&s, 0, sizeof(s));
    s.blocks = atoi(argv[2]);
    depth = atoi(argv[3]);
    seconds = atof(argv[4]);
    s.iscsi = iscsi_create_context("iqn.2026-11.org.bootyard:bench-write");
    url = iscsi_parse_full_url(s.iscsi, argv[1]);
    if (url == NULL) {
        fprintf(stderr, "bad url: %s\n", iscsi_get_error(s.iscsi));
        return 1;
    }
    iscsi_set_targetname(s.iscsi, url->target);
    iscsi_set_session_type(s.iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(s.iscsi, ISCSI_HEADER_DIGEST_NONE);
    if (iscsi_full_connect_sync(s.iscsi, url->portal, url->lun) != 0) {
        fprintf(stderr, "login failed: %s\n", iscsi_get_error(s.iscsi));
        return 1;
    }
    s.lun = url->lun;
    task = iscsi_readcapacity10_sync(s.iscsi, s.lun, 0, 0);
    if (task == NULL || task->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, "read capacity failed\n");
        return 1;
    }
    rc = scsi_datain_unmarshall(task);
    s.capacity = rc->lba + 1;
    scsi_free_scsi_task(task);
    s.data = calloc(s.blocks, 512);
    for (i = 0; i < (int)(s.blocks * 512); i++)
        s.data[i] = (unsigned char)(i * 7);
    start = now();
    for (i = 0; i < depth; i++)
        issue(&s);
    while (s.outstanding > 0) {
        struct pollfd pfd = {iscsi_get_fd(s.iscsi), iscsi_which_events(s.iscsi), 0};
        if (now() - start >= seconds)
            s.stopping = 1;
        if (poll(&pfd, 1, 100) < 0)
            break;
        if (iscsi_service(s.iscsi, pfd.revents) < 0) {
            fprintf(stderr, "service failed: %s\n", iscsi_get_error(s.iscsi));
            return 1;
        }
    }
    seconds = now() - start;
    printf("WRITE ios=%ld bytes=%ld seconds=%.3f failed=%ld\n", s.ios,
           s.ios * (long)s.blocks * 512, seconds, s.failed);
    iscsi_logout_sync(s.iscsi);
    iscsi_destroy_context(s.iscsi);
    return s.failed ? 1 : 0;
}
