/*
 * frame.h - length-prefixed frames for the raw TCP listener
 * (--tcp-listen): each frame is a 4-byte big-endian payload length and
 * that many payload bytes. The client's first frame is a command
 * ("SUB ch1 ch2 ..." or "PUB ch"); every later frame is one message.
 * Pure code: no syscalls, no allocation, no global state. A fuzzer drives
 * it with bytes alone.
 *
 * The parser holds no bytes. A header is parsed only once its 4 bytes are
 * all in the caller's buffer; until then frame_parse() consumes nothing
 * and the caller (conn.c) carries the tail, which is therefore at most 3
 * bytes. Payload is delivered in pieces as it arrives, pointing into the
 * caller's buffer, so a 16 MiB frame never needs 16 MiB of buffer here.
 * What the parser keeps between calls is the current frame's length and
 * how much of it is still due.
 *
 * The one rule: a frame whose header claims more than max_message bytes
 * (a claimed 0xFFFFFFFF included) fails as soon as its header is
 * complete, before any of its payload is delivered; nothing is ever sized
 * by a claimed length. A length of 0 is a valid, empty frame.
 *
 * Channel names (channel_name_valid) follow one rule for every protocol:
 * the HTTP routes (GET /sub/CHANNEL, publishing) check names with the
 * same function, so a channel reachable one way is reachable every way.
 */
#ifndef MOOR_FRAME_H
#define MOOR_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#define FRAME_HEADER 4                      /* the length prefix */
#define FRAME_MAX_MESSAGE_LIMIT 0xFFFFFFFFu /* max_message's ceiling */

/* ---- channel names ------------------------------------------------------ */

#define CHANNEL_NAME_MAX 128

/* True if p[0..n) is a channel name: 1 to CHANNEL_NAME_MAX bytes, each an
 * ASCII letter, a digit or one of "-_.:@". Nothing needs escaping in a
 * URL path, a command or a log line. */
bool channel_name_valid(const uint8_t *p, size_t n);

/* ---- frames ------------------------------------------------------------- */

/* The parser's errors (*err of frame_parse). */
enum frame_error {
    FRAME_ERR_TOO_BIG = 1, /* the header claims more than max_message */
};

enum frame_event_type {
    FRAME_EV_NONE = 0, /* bytes consumed, nothing to report yet */
    FRAME_EV_DATA,     /* a piece of a frame's payload */
};

struct frame_event {
    enum frame_event_type type;
    bool first;          /* DATA: first piece of its frame */
    bool fin;            /* DATA: last piece of its frame */
    const uint8_t *data; /* DATA: payload, inside the input */
    size_t len;
    uint32_t frame_len; /* DATA: the whole frame's payload length (known
                           from the header, so the first piece can tell);
                           on FRAME_ERR_TOO_BIG: the length claimed */
};

/* What a connection keeps between reads: 12 bytes. */
struct frame_pstate {
    uint32_t remaining;   /* payload bytes still due in the current frame */
    uint32_t frame_len;   /* the current frame's payload length */
    uint8_t in_frame : 1; /* a header was consumed, payload is due */
    uint8_t first : 1;    /* no piece of the current frame delivered yet */
    uint8_t closed : 1;   /* an error was reported: nothing after */
};

/* A parser: the kept state plus the limit, which a connection may take
 * from its server instead of storing it. */
struct frame_parser {
    struct frame_pstate s;
    uint32_t max_message; /* 0 = the most there is: 4 GiB - 1 */
};

/* max_message: the longest payload accepted; 0, or anything at or above
 * FRAME_MAX_MESSAGE_LIMIT, means every length a header can hold. */
void frame_parser_init(struct frame_parser *p, uint64_t max_message);
/* The kept state of a parser that has seen nothing yet. */
void frame_pstate_init(struct frame_pstate *s);

/*
 * Parses from in[0..len), which it only reads. Reports at most one event
 * per call.
 * Return value: >0 bytes consumed (ev says what, possibly FRAME_EV_NONE:
 * a header alone was consumed); 0 more input is needed (nothing consumed;
 * keep the bytes, at most FRAME_HEADER - 1 of them, and call again with
 * more); -1 the peer broke the rule: *err is FRAME_ERR_TOO_BIG,
 * ev->frame_len the length it claimed, nothing consumed or delivered
 * from that frame. After an error every further call returns 0 and
 * FRAME_EV_NONE.
 * A zero-length frame yields one FRAME_EV_DATA with len 0, first and fin;
 * a non-empty frame yields pieces of len > 0 only, the first with first
 * set, the last with fin set. The events and the error never depend on
 * how the input was split between calls.
 */
ssize_t frame_parse(struct frame_parser *p, const uint8_t *in, size_t len,
                    struct frame_event *ev, int *err);

/* A static description of a frame_parse() error, for logs. */
const char *frame_strerror(int err);

/* Writes the 4-byte big-endian header for a payload of len bytes. */
void frame_encode_header(uint8_t out[FRAME_HEADER], uint32_t len);

/* ---- the command (the first frame) -------------------------------------- */

enum frame_verb {
    FRAME_CMD_SUB = 1, /* subscribe to the named channels */
    FRAME_CMD_PUB,     /* every later frame is a message to the channel */
};

/* frame_parse_command()'s errors (negative, each with a static cmd->why). */
enum frame_command_error {
    FRAME_CMD_EVERB = -1,    /* not "SUB" or "PUB" (case-sensitive) */
    FRAME_CMD_ENOCHAN = -2,  /* a verb with no channel */
    FRAME_CMD_ETOOMANY = -3, /* over max_channels, or PUB with two */
    FRAME_CMD_EBADNAME = -4, /* a name failing channel_name_valid(), or
                                not single-space separated */
    FRAME_CMD_EOPTION = -5,  /* a bad, unknown, repeated or misplaced
                                option (since=ID, ids=1) */
};

/* since=ID: at most this many bytes of ID (EPOCH:OFFSET is 37). */
#define FRAME_SINCE_MAX 40
/* What the options may add to a SUB: " since=" ID " ids=1". */
#define FRAME_CMD_OPTS_MAX (7 + FRAME_SINCE_MAX + 6)

struct frame_command {
    enum frame_verb verb;
    uint32_t n_channels;     /* at least 1 */
    const uint8_t *channels; /* the names, single-space separated, inside
                                the input; walk them with
                                frame_command_next() */
    size_t channels_len;
    const uint8_t *since; /* SUB's since=ID: the ID, inside the input, or
                             NULL (recovery: docs/pubsub.md) */
    size_t since_len;
    bool ids;        /* SUB's ids=1: messages come in the id envelope */
    const char *why; /* on failure: what was wrong (static) */
};

/*
 * Parses a command frame's whole payload p[0..n):
 *     "SUB" 1*(" " name) *(" " option)   at most max_channels names
 *                                        (0: no limit)
 *     "PUB" " " name                     exactly one name
 *     option = "since=" 1*40(HEXDIG / ":") / "ids=1"   each at most once
 * Verbs are upper case; exactly one space goes between the verb and each
 * name, none before the verb or after the last name, and there is no line
 * end. Each name passes channel_name_valid(). A name given twice is
 * accepted (subscribing twice is subscribing once). The first problem
 * from the left is the one reported (for one name: its syntax, then the
 * count). Borrows p: cmd points into it.
 * Return value: 0 and *cmd filled; or a frame_command_error, with
 * cmd->why set.
 */
int frame_parse_command(const uint8_t *p, size_t n, uint32_t max_channels,
                        struct frame_command *cmd);

/* Takes the next channel name of a parsed command from *pos (start at
 * 0): *name and *len point into the command's input. Returns false when
 * there are no more. */
bool frame_command_next(const struct frame_command *cmd, size_t *pos,
                        const uint8_t **name, size_t *len);

/* The longest command payload that frame_parse_command() can accept with
 * max_channels (SIZE_MAX when 0: no limit). A caller may refuse a first
 * frame whose header claims more before buffering any of it. */
size_t frame_command_max(uint32_t max_channels);
/* The same with room for SUB's options (FRAME_CMD_OPTS_MAX). */
size_t frame_command_max_opts(uint32_t max_channels);

#endif
