/*
 * config.h - every flag of `moor serve`, its default, its environment
 * variable and the metric that shows when it bites, in one table
 * (config.c), read by the flag engine (flags.h). --help,
 * docs/limits.md and docs/moor.1 are generated from that table.
 *
 * Precedence: command-line flag > environment variable > config file
 * (--config FILE, or MOOR_CONFIG) > default. A flag --foo-bar is read
 * from the environment as MOOR_FOO_BAR and from the file as foo-bar.
 * docs/config.md has the file's format and what SIGHUP rereads.
 *
 * Units: durations take ms, s, m, h ("250ms", "10s", "2m"); "0" alone means
 * zero/off. Sizes take B, KiB, MiB, GiB (powers of 1024), KB, MB, GB
 * (powers of 1000), or a plain number of bytes.
 */
#ifndef MOOR_CONFIG_H
#define MOOR_CONFIG_H

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>

struct moor_config {
    char listen[128];               /* --listen host:port */
    char tcp_listen[128];           /* --tcp-listen host:port, "" = off */
    char tls_listen[128];           /* --tls-listen host:port, "" = off */
    char admin_listen[128];         /* --admin-listen host:port, "" = off */
    char tls_cert[512];             /* --tls-cert PEM chain */
    char tls_key[512];              /* --tls-key PEM key */
    char tls_min_version[8];        /* --tls-min-version 1.2|1.3 */
    char tls_ciphersuites[256];     /* --tls-ciphersuites (TLS 1.3) */
    char tls_ciphers[512];          /* --tls-ciphers (TLS 1.2) */
    bool tls_tickets;               /* --tls-tickets */
    bool tcp_tls;                   /* --tcp-tls */
    uint32_t max_debug_streams;     /* --max-debug-streams, 0 = off */
    uint32_t debug_interval_ms;     /* --debug-stream-interval */
    uint32_t handshake_timeout_ms;  /* --handshake-timeout */
    uint32_t max_conns;             /* --max-conns */
    uint32_t accept_rate;           /* --accept-rate per second, 0 = off */
    uint32_t accept_burst;          /* --accept-burst */
    uint32_t max_conns_per_ip;      /* --max-conns-per-ip, 0 = off */
    uint32_t rate_per_ip;           /* --handshake-rate-per-ip, 0 = off */
    uint32_t burst_per_ip;          /* --handshake-burst-per-ip */
    uint32_t ip_table_size;         /* --ip-table-size */
    uint32_t header_timeout_ms;     /* --header-timeout */
    uint32_t body_timeout_ms;       /* --body-timeout */
    uint32_t message_timeout_ms;    /* --message-timeout */
    uint32_t idle_timeout_ms;       /* --idle-timeout (keep-alive) */
    uint32_t write_timeout_ms;      /* --write-timeout */
    uint32_t linger_timeout_ms;     /* --linger-timeout */
    uint32_t shutdown_timeout_ms;   /* --shutdown-timeout */
    uint64_t max_header_bytes;      /* --max-header-bytes */
    uint32_t max_headers;           /* --max-headers */
    uint64_t max_body;              /* --max-body */
    uint64_t queue_limit;           /* --queue-limit per connection */
    uint64_t read_buffer;           /* --read-buffer per loop */
    uint64_t memory_limit;          /* --memory-limit, 0 = none */
    uint32_t mem_trim_interval_ms;  /* --mem-trim-interval, 0 = off */
    uint64_t mem_trim_threshold;    /* --mem-trim-threshold */
    char log_level[16];             /* --log-level */
    uint64_t max_message;           /* --max-message (WebSocket) */
    uint32_t ping_interval_ms;      /* --ping-interval */
    uint32_t pong_timeout_ms;       /* --pong-timeout */
    uint32_t close_timeout_ms;      /* --close-timeout */
    uint32_t drain_spread_ms;       /* --drain-spread */
    char allowed_origins[1024];     /* --allowed-origins */
    bool mem_trace;                 /* --mem-trace */
    char slow_policy[16];           /* --slow-policy */
    uint64_t queue_soft_limit;      /* --queue-soft-limit, 0 = none */
    uint32_t queue_soft_time_ms;    /* --queue-soft-time */
    uint32_t max_channels;          /* --max-channels in total */
    uint32_t max_channels_per_conn; /* --max-channels-per-conn */
    uint32_t history_size;          /* --history-size, 0 = off */
    uint32_t history_ttl_ms;        /* --history-ttl, 0 = off */
    uint64_t history_max_bytes;     /* --history-max-bytes */
    uint32_t recovery_max;          /* --recovery-max */
    uint32_t rate;                  /* --rate messages/s per publisher */
    uint32_t burst;                 /* --burst */
    uint64_t byte_rate;             /* --byte-rate bytes/s per publisher */
    uint32_t sse_heartbeat_ms;      /* --sse-heartbeat */
    uint32_t sse_retry_ms;          /* --sse-retry */
    /* Who may subscribe and publish (auth.h, docs/auth.md). */
    char auth[8];                   /* --auth none|jwt */
    char jwt_secret_file[512];      /* --jwt-secret-file */
    char jwt_key_file[2048];        /* --jwt-key-file FILE|KID=FILE,... */
    uint32_t jwt_leeway_ms;         /* --jwt-leeway */
    char jwt_audience[256];         /* --jwt-audience */
    char jwt_issuer[256];           /* --jwt-issuer */
    char jwt_channels_claim[64];    /* --jwt-channels-claim */
    char jwt_publish_claim[64];     /* --jwt-publish-claim */
    char auth_cookie[64];           /* --auth-cookie */
    uint64_t max_token_bytes;       /* --max-token-bytes */
    char auth_url[1024];            /* --auth-url (--auth url) */
    uint32_t auth_timeout_ms;       /* --auth-timeout */
    uint32_t auth_max_inflight;     /* --auth-max-inflight */
    uint32_t auth_cache_ttl_ms;     /* --auth-cache-ttl */
    uint32_t auth_cache_entries;    /* --auth-cache-entries */
    char auth_forward_headers[512]; /* --auth-forward-headers */
    /* The InfluxDB push (influx.h, docs/monitoring.md). */
    char influx_url[1024];          /* --influx-url */
    char influx_token_file[512];    /* --influx-token-file */
    char influx_user[128];          /* --influx-user */
    char influx_password_file[512]; /* --influx-password-file */
    uint32_t influx_interval_ms;    /* --influx-interval */
    char influx_tags[256];          /* --influx-tags */
    char influx_precision[4];       /* --influx-precision */
    uint64_t influx_buffer;         /* --influx-buffer */
    char influx_gzip[8];            /* --influx-gzip: auto, on or off */
};

/* Fills c with every default. */
void config_defaults(struct moor_config *c);

/*
 * Parses argv[0..argc) (the words after "serve") over the environment
 * (envp, NULL-terminated "NAME=value" strings; NULL = none) and defaults.
 * Accepts "--flag value" and "--flag=value"; boolean flags take no value.
 * With --config FILE (or MOOR_CONFIG) the file is read first, under the
 * environment and the command line.
 * Return value: 0 on success; 1 if --help/-h, --limits-md, --metrics-md or
 * --man was asked (the text already printed to out; c holds the defaults)
 * or --print-config (the effective configuration printed to out); -1
 * on a bad flag or value, with a one-line message naming the flag, the bad
 * value and what is expected written to err, e.g. invalid value "10x" for
 * --idle-timeout: expected a duration like 250ms, 10s, 2m
 */
int config_parse(struct moor_config *c, int argc, char **argv, char **envp,
                 FILE *out, char *err, size_t errlen);

/* The config file of argv (--config FILE or --config=FILE) or else of
 * the environment (MOOR_CONFIG), or NULL: none. "" for --config without
 * a name (config_parse() refuses it). */
const char *config_file_path(int argc, char **argv, char **envp);

/* Prints c as a config file: a header, then every setting as "name
 * value" under a comment with its help sentence; it reads back (--config)
 * to the same c. What --print-config prints. */
void config_print(FILE *out, const struct moor_config *c);

/*
 * SIGHUP: compares next (a whole new parse) with live, setting by
 * setting. A setting marked reloadable in the table is copied into live;
 * any other that differs stays as it is in live. report, if not NULL, is
 * called for each setting that differs with its name, whether it was
 * applied, and the old and the new value as text. Returns the number of
 * settings applied.
 */
int config_reload(struct moor_config *live, const struct moor_config *next,
                  void (*report)(const char *name, bool applied,
                                 const char *was, const char *now, void *arg),
                  void *arg);

/* Prints the --help text (every flag, its default, its env variable). */
void config_print_help(FILE *out);
/* Prints docs/limits.md (a Markdown table: flag, default, env, metric). */
void config_print_limits_md(FILE *out);
/* Prints docs/moor.1, the manual page (roff): the commands, every flag
 * with its default, environment variable and metric, the signals. */
void config_print_man(FILE *out);

/* The long name (without "--") of the i-th flag of the table, or NULL
 * past the end; for tests and tools that walk every flag. */
const char *config_flag_name(size_t i);

#endif
