/*
 * rdkafka_e2e: produce-to-consume latency with librdkafka at a rate held to the record.
 *
 * rdkafka_performance's producer paces itself by sleeping 1,000,000 / rate microseconds
 * per record, in whole microseconds: above 1,000,000 records/s that is zero and it sends
 * as fast as it can, and between 500,000 and 1,000,000 it runs 10% to 15% slow. This
 * harness holds any rate: record i is due at start + i / rate; the producer sleeps until
 * the next record is due and then sends every record that is due.
 *
 * One process, two librdkafka handles: a producer (main thread) and a consumer (a second
 * thread, legacy simple consumer on one partition from its start, no group). Each value
 * carries a magic, the record's index and its send time (CLOCK_MONOTONIC, read just before
 * rd_kafka_producev), so latency is send to the consumer's receipt, on one clock. The
 * first receipt of each index counts; a record received twice (a retry of the producer,
 * which is not idempotent) is counted as a duplicate.
 *
 *   rdkafka_e2e -b HOST:PORT -t TOPIC [-p PARTITION] -s SIZE -c COUNT -r RATE
 *               [-X producer.key=value]... [-Y consumer.key=value]... [-w SECS] [-L MS] [-W N]
 *
 * Before the clock starts, the producer sends N warm-up records (-W, default 1; their own
 * magic, not counted) and waits for their acknowledgement, so that the run measures a
 * producer that knows the partition's leader and is connected to it, not the producer's
 * start: librdkafka drops its bootstrap connections once it has the cluster's brokers, and
 * a record produced in that moment waits 50 to 100 ms for its next leader query to connect
 * (a first acknowledgement 55 to 112 ms after the start in 14 of 30 runs on three nodes with
 * a core kept busy; docs/decisions/0030). -W 0 measures from the producer's creation, as
 * before. The JSON line gives warmup_ms (from the producer's creation to the warm-up's
 * acknowledgement) and first_ack_ms (from the start of the run to the first record's
 * acknowledgement).
 *
 * -X acks=all and -X linger.ms=1 are the defaults set before the -X given. -L MS reports on
 * stderr each record that starts a stretch of records later than MS (its index, offset and
 * when it came, on the wall clock, to match a client's or a node's log). Prints one
 * line of JSON; exits 1 if a record was not delivered or not received within -w seconds
 * (default 60) of the last send, 2 on bad arguments.
 *
 * Build (bench/suite.py does this, against the librdkafka tree rdkafka_performance came
 * from): cc -O2 -o rdkafka_e2e bench/rdkafka_e2e.c -I LIBRDKAFKA/src
 *            LIBRDKAFKA/src/librdkafka.a -lm -lz -ldl -lpthread -lrt
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rdkafka.h"

#define MAGIC UINT64_C(0x6532656361697231) /* "1riacE2e", little-endian */
#define WARMUP_MAGIC UINT64_C(0x6d72576361697231) /* "1riacWrm" */
#define HEADER_BYTES 24                    /* magic, index, send time */

/* Latency histogram: 1 us buckets below 100 ms, 100 us buckets from there to 100 s. */
#define FINE_US 100000
#define COARSE_STEP_US 100
#define COARSE_BUCKETS 1000000
static uint64_t fine[FINE_US];
static uint64_t coarse[COARSE_BUCKETS];
static uint64_t over; /* beyond 100 s */
static uint64_t max_us;

static void record_latency(uint64_t us) {
        if (us > max_us)
                max_us = us;
        if (us < FINE_US)
                fine[us]++;
        else if ((us - FINE_US) / COARSE_STEP_US < COARSE_BUCKETS)
                coarse[(us - FINE_US) / COARSE_STEP_US]++;
        else
                over++;
}

/* The latency (ms) at quantile q of n recorded latencies. */
static double quantile_ms(uint64_t n, double q) {
        uint64_t rank = (uint64_t)(q * (double)n), seen = 0;
        if (rank >= n)
                rank = n - 1;
        for (uint64_t us = 0; us < FINE_US; us++) {
                seen += fine[us];
                if (seen > rank)
                        return (double)us / 1000.0;
        }
        for (uint64_t b = 0; b < COARSE_BUCKETS; b++) {
                seen += coarse[b];
                if (seen > rank)
                        return (double)(FINE_US + b * COARSE_STEP_US) / 1000.0;
        }
        return (double)max_us / 1000.0;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put_u64(unsigned char *at, uint64_t v) {
        for (int i = 0; i < 8; i++)
                at[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *at) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v |= (uint64_t)at[i] << (8 * i);
        return v;
}

static void die(int code, const char *what, const char *detail) {
        fprintf(stderr, "rdkafka_e2e: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
        exit(code);
}

static void set(rd_kafka_conf_t *conf, const char *kv) {
        char key[256], errstr[512];
        const char *eq = strchr(kv, '=');
        if (!eq || (size_t)(eq - kv) >= sizeof(key))
                die(2, "a setting is KEY=VALUE, got", kv);
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = '\0';
        if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
                die(2, "bad setting", errstr);
}

/* What the consumer thread shares with the main thread. */
static const char *brokers, *topic;
static int32_t partition;
static uint64_t count;
static rd_kafka_conf_t *consumer_conf;
static unsigned char *seen; /* one bit per index */
static uint64_t received, duplicates, foreign, warmups_received;
static atomic_int consumer_ready;   /* fetched once: the producer may start */
static atomic_uint_fast64_t stop_at; /* the consumer gives up at this time (ns), 0: never */
static char consumer_error[512];
static uint64_t late_ns;  /* -L: report where latency first exceeds this, 0: never */
static int late_now;      /* the last record received was late */

static void on_message(rd_kafka_message_t *m, void *opaque) {
        (void)opaque;
        uint64_t at = now_ns();
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                atomic_store(&consumer_ready, 1);
        } else if (m->err) {
                snprintf(consumer_error, sizeof(consumer_error), "consume: %s", rd_kafka_message_errstr(m));
        } else if (m->len >= HEADER_BYTES && get_u64(m->payload) == WARMUP_MAGIC) {
                warmups_received++;
        } else if (m->len < HEADER_BYTES || get_u64(m->payload) != MAGIC ||
                   get_u64((unsigned char *)m->payload + 8) >= count) {
                foreign++;
        } else {
                const unsigned char *p = m->payload;
                uint64_t index = get_u64(p + 8), sent = get_u64(p + 16);
                if (seen[index / 8] & (1u << (index % 8))) {
                        duplicates++;
                } else {
                        seen[index / 8] |= (unsigned char)(1u << (index % 8));
                        received++;
                        record_latency(at > sent ? (at - sent) / 1000 : 0);
                        int late = late_ns && at > sent && at - sent > late_ns;
                        if (late && !late_now) {
                                struct timespec wall;
                                clock_gettime(CLOCK_REALTIME, &wall);
                                fprintf(stderr,
                                        "rdkafka_e2e: late from index %" PRIu64 " (offset %" PRId64
                                        "): %.1f ms, received at %ld.%06ld (wall clock)\n",
                                        index, m->offset, (double)(at - sent) / 1e6, (long)wall.tv_sec,
                                        wall.tv_nsec / 1000);
                        }
                        late_now = late;
                }
        }
}

static void *consume(void *arg) {
        (void)arg;
        char errstr[256];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, consumer_conf, errstr, sizeof(errstr));
        if (!rk) {
                snprintf(consumer_error, sizeof(consumer_error), "consumer: %s", errstr);
                atomic_store(&consumer_ready, -1);
                return NULL;
        }
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rd_kafka_consume_start(rkt, partition, RD_KAFKA_OFFSET_BEGINNING) == -1) {
                snprintf(consumer_error, sizeof(consumer_error), "consume_start: %s",
                         rd_kafka_err2str(rd_kafka_last_error()));
                atomic_store(&consumer_ready, -1);
                return NULL;
        }
        /* rd_kafka_consume_callback hands over every message queued as soon as one is there
         * (rd_kafka_consume_batch would wait for a full batch or its timeout). */
        while (received < count) {
                uint64_t stop = atomic_load(&stop_at);
                if (stop && now_ns() > stop)
                        break;
                rd_kafka_consume_callback(rkt, partition, 100, on_message, NULL);
        }
        rd_kafka_consume_stop(rkt, partition);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return NULL;
}

static atomic_uint_fast64_t delivered, delivery_errors, warmups_delivered;
static char delivery_error[512];
static uint64_t first_ack_ns; /* when the run's first delivery report came (main thread only) */
static char warmup_tag;       /* a warm-up record's opaque points here */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        if (m->_private == &warmup_tag) {
                if (m->err)
                        die(1, "a warm-up record was not delivered", rd_kafka_err2str(m->err));
                atomic_fetch_add(&warmups_delivered, 1);
                return;
        }
        if (m->err) {
                if (atomic_fetch_add(&delivery_errors, 1) == 0)
                        snprintf(delivery_error, sizeof(delivery_error), "%s", rd_kafka_err2str(m->err));
        } else {
                atomic_fetch_add(&delivered, 1);
        }
        if (first_ack_ns == 0)
                first_ack_ns = now_ns();
}

static void usage(void) {
        die(2, "usage: rdkafka_e2e -b HOST:PORT -t TOPIC [-p PARTITION] -s SIZE -c COUNT -r RATE "
               "[-X producer.key=value]... [-Y consumer.key=value]... [-w SECS] [-L MS] [-W N]",
            NULL);
}

int main(int argc, char **argv) {
        char errstr[512];
        size_t size = 0;
        double rate = 0;
        int wait_secs = 60;
        long warmups = 1;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        consumer_conf = rd_kafka_conf_new();
        set(conf, "acks=all");
        set(conf, "linger.ms=1");
        set(consumer_conf, "enable.partition.eof=true");
        int opt;
        while ((opt = getopt(argc, argv, "b:t:p:s:c:r:X:Y:w:L:W:")) != -1) {
                switch (opt) {
                case 'b': brokers = optarg; break;
                case 't': topic = optarg; break;
                case 'p': partition = (int32_t)atoi(optarg); break;
                case 's': size = (size_t)strtoull(optarg, NULL, 10); break;
                case 'c': count = strtoull(optarg, NULL, 10); break;
                case 'r': rate = strtod(optarg, NULL); break;
                case 'X': set(conf, optarg); break;
                case 'Y': set(consumer_conf, optarg); break;
                case 'w': wait_secs = atoi(optarg); break;
                case 'L': late_ns = (uint64_t)(strtod(optarg, NULL) * 1e6); break;
                case 'W': warmups = strtol(optarg, NULL, 10); break;
                default: usage();
                }
        }
        if (!brokers || !topic || optind != argc)
                usage();
        if (size < HEADER_BYTES)
                die(2, "-s must be at least 24 (the header: magic, index, send time)", NULL);
        if (count == 0 || !(rate > 0))
                die(2, "-c and -r must be above 0", NULL);
        if (warmups < 0)
                die(2, "-W must be 0 or more", NULL);
        char kv[1024];
        snprintf(kv, sizeof(kv), "bootstrap.servers=%s", brokers);
        set(conf, kv);
        set(consumer_conf, kv);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);

        seen = calloc(count / 8 + 1, 1);
        if (!seen)
                die(1, "out of memory for the received bitmap", NULL);
        pthread_t consumer;
        pthread_create(&consumer, NULL, consume, NULL);
        /* The producer starts once the consumer has fetched the (empty) partition's end. */
        uint64_t deadline = now_ns() + 30ull * 1000000000u;
        while (atomic_load(&consumer_ready) == 0 && now_ns() < deadline)
                usleep(1000);
        if (atomic_load(&consumer_ready) != 1)
                die(1, "the consumer did not start", consumer_error[0] ? consumer_error : "no fetch answered within 30 s");

        uint64_t created = now_ns();
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk)
                die(1, "producer", errstr);
        unsigned char *value = malloc(size);
        if (!value)
                die(1, "out of memory for the record", NULL);
        memset(value, 'x', size);
        put_u64(value, WARMUP_MAGIC);
        for (long w = 0; w < warmups; w++) {
                put_u64(value + 8, (uint64_t)w);
                put_u64(value + 16, now_ns());
                rd_kafka_resp_err_t err = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_VALUE(value, size),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&warmup_tag), RD_KAFKA_V_END);
                if (err)
                        die(1, "warm-up produce", rd_kafka_err2str(err));
        }
        if (warmups > 0) {
                rd_kafka_flush(rk, wait_secs * 1000);
                if ((long)atomic_load(&warmups_delivered) < warmups)
                        die(1, "the warm-up records were not acknowledged within -w seconds", NULL);
        }
        double warmup_ms = warmups > 0 ? (now_ns() - created) / 1e6 : 0.0;
        put_u64(value, MAGIC);
        uint64_t start = now_ns(), behind_max = 0, queue_full = 0;
        double ns_per_record = 1e9 / rate;
        for (uint64_t i = 0; i < count; i++) {
                uint64_t due = start + (uint64_t)((double)i * ns_per_record), now = now_ns();
                if (now < due) {
                        rd_kafka_poll(rk, 0);
                        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                                ;
                        now = now_ns();
                } else if (now - due > behind_max) {
                        behind_max = now - due;
                }
                put_u64(value + 8, i);
                put_u64(value + 16, now);
                rd_kafka_resp_err_t err;
                while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                                RD_KAFKA_V_VALUE(value, size),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        queue_full++;
                        rd_kafka_poll(rk, 1);
                }
                if (err)
                        die(1, "produce", rd_kafka_err2str(err));
                if (i % 1024 == 0)
                        rd_kafka_poll(rk, 0);
        }
        uint64_t sent_ns = now_ns() - start;
        atomic_store(&stop_at, now_ns() + (uint64_t)wait_secs * 1000000000u);
        rd_kafka_flush(rk, wait_secs * 1000);
        pthread_join(consumer, NULL);
        uint64_t elapsed_ns = now_ns() - start;
        rd_kafka_destroy(rk);

        uint64_t n = received ? received : 1;
        printf("{\"records\": %" PRIu64 ", \"size\": %zu, \"rate_asked\": %.0f, \"sent_secs\": %.6f, "
               "\"send_rate\": %.0f, \"behind_max_ms\": %.3f, \"queue_full\": %" PRIu64 ", "
               "\"delivered\": %" PRIu64 ", \"delivery_errors\": %" PRIu64 ", \"received\": %" PRIu64 ", "
               "\"duplicates\": %" PRIu64 ", \"foreign\": %" PRIu64 ", \"elapsed_secs\": %.6f, "
               "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, "
               "\"warmup_records\": %ld, \"warmup_ms\": %.3f, \"warmups_received\": %" PRIu64 ", "
               "\"first_ack_ms\": %.3f}\n",
               count, size, rate, sent_ns / 1e9, count / (sent_ns / 1e9), behind_max / 1e6, queue_full,
               (uint64_t)atomic_load(&delivered), (uint64_t)atomic_load(&delivery_errors), received, duplicates,
               foreign, elapsed_ns / 1e9, quantile_ms(n, 0.50), quantile_ms(n, 0.90), quantile_ms(n, 0.99),
               quantile_ms(n, 0.999), max_us / 1000.0, warmups, warmup_ms, warmups_received,
               first_ack_ns ? (first_ack_ns - start) / 1e6 : -1.0);
        if (atomic_load(&delivery_errors))
                fprintf(stderr, "rdkafka_e2e: %" PRIu64 " records not delivered, the first: %s\n",
                        (uint64_t)atomic_load(&delivery_errors), delivery_error);
        else if (atomic_load(&delivered) < count)
                fprintf(stderr, "rdkafka_e2e: %" PRIu64 " of %" PRIu64 " records delivered within %d s of the last send\n",
                        (uint64_t)atomic_load(&delivered), count, wait_secs);
        if (received < count)
                fprintf(stderr, "rdkafka_e2e: %" PRIu64 " of %" PRIu64 " records received within %d s of the last send%s%s\n",
                        received, count, wait_secs, consumer_error[0] ? "; " : "", consumer_error);
        return atomic_load(&delivered) == count && received == count ? 0 : 1;
}
