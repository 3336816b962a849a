/*
 * frame.c - length-prefixed frames (a 4-byte big-endian length, then the
 * payload) for the raw TCP listener, the command of a connection's first
 * frame, and the channel name rule.
 *
 * What it does: frame_parse() turns the bytes of the caller's buffer into
 * payload pieces and refuses a frame longer than max_message from its
 * header alone; frame_parse_command() reads "SUB ch1 ch2" / "PUB ch".
 *
 * Invariants:
 *  - The parser holds no input bytes and never writes to the input. A
 *    header is read only once all 4 of its bytes are present; until then
 *    nothing is consumed, so the caller's carried tail is at most 3 bytes.
 *  - A claimed length is compared with max_message before any of its
 *    payload is delivered; nothing is ever sized by it.
 *  - The answer depends on the bytes only, never on how they were split
 *    between calls.
 *  - After an error the parser is closed: every further call consumes
 *    nothing and reports nothing.
 *
 * Must not: make syscalls, allocate through mem.c, keep mutable global
 * state, or call upward into conn or server code.
 */
#include <string.h>

#include "frame.h"
#include "util.h"

/* ---- channel names ------------------------------------------------------ */

static bool name_byte(uint8_t c)
{
    return ascii_is_alnum(c) || c == '-' || c == '_' || c == '.' || c == ':' ||
           c == '@';
}

bool channel_name_valid(const uint8_t *p, size_t n)
{
    if (n == 0 || n > CHANNEL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!name_byte(p[i]))
            return false;
    }
    return true;
}

/* ---- frames ------------------------------------------------------------- */

void frame_pstate_init(struct frame_pstate *s)
{
    memset(s, 0, sizeof(*s));
}

void frame_parser_init(struct frame_parser *p, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    frame_pstate_init(&p->s);
    p->max_message = max_message < FRAME_MAX_MESSAGE_LIMIT
                         ? (uint32_t)max_message
                         : FRAME_MAX_MESSAGE_LIMIT;
}

/*
 * Delivers the next piece of the current frame from in[0..avail).
 * Return value: bytes consumed; 0 with no event when payload is due but
 * none is here (avail is 0).
 */
static size_t deliver(struct frame_parser *p, const uint8_t *in, size_t avail,
                      struct frame_event *ev)
{
    size_t n = p->s.remaining < avail ? (size_t)p->s.remaining : avail;

    if (n == 0 && p->s.remaining != 0)
        return 0;
    p->s.remaining -= (uint32_t)n;
    ev->type = FRAME_EV_DATA;
    ev->first = p->s.first;
    ev->fin = p->s.remaining == 0;
    ev->data = in;
    ev->len = n;
    ev->frame_len = p->s.frame_len;
    p->s.first = false;
    if (p->s.remaining == 0)
        p->s.in_frame = false;
    return n;
}

ssize_t frame_parse(struct frame_parser *p, const uint8_t *in, size_t len,
                    struct frame_event *ev, int *err)
{
    uint32_t flen, max;

    memset(ev, 0, sizeof(*ev));
    if (p->s.closed || len == 0)
        return 0;
    if (p->s.in_frame)
        return (ssize_t)deliver(p, in, len, ev);
    if (len < FRAME_HEADER)
        return 0;

    flen = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
           (uint32_t)in[2] << 8 | in[3];
    max = p->max_message ? p->max_message : FRAME_MAX_MESSAGE_LIMIT;
    if (flen > max) {
        p->s.closed = true;
        ev->frame_len = flen;
        *err = FRAME_ERR_TOO_BIG;
        return -1;
    }
    p->s.frame_len = flen;
    p->s.remaining = flen;
    p->s.first = true;
    p->s.in_frame = true;
    return FRAME_HEADER +
           (ssize_t)deliver(p, in + FRAME_HEADER, len - FRAME_HEADER, ev);
}

const char *frame_strerror(int err)
{
    switch (err) {
    case FRAME_ERR_TOO_BIG:
        return "frame length over max-message";
    default:
        return "unknown frame error";
    }
}

void frame_encode_header(uint8_t out[FRAME_HEADER], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

/* ---- the command -------------------------------------------------------- */

static int cmd_fail(struct frame_command *cmd, int code, const char *why)
{
    cmd->why = why;
    return code;
}

/* One option word w[0..n) of a SUB: "since=ID" (1 to FRAME_SINCE_MAX
 * bytes of hex digits and ':'; what it means is pub/sub's) or "ids=1",
 * each at most once. */
static int parse_option(struct frame_command *cmd, const uint8_t *w, size_t n)
{
    if (cmd->verb != FRAME_CMD_SUB)
        return cmd_fail(cmd, FRAME_CMD_EOPTION, "PUB takes no option");
    if (n == 5 && !memcmp(w, "ids=1", 5) && !cmd->ids) {
        cmd->ids = true;
        return 0;
    }
    if (n > 6 && n - 6 <= FRAME_SINCE_MAX && !memcmp(w, "since=", 6) &&
        !cmd->since) {
        for (size_t i = 6; i < n; i++)
            if (!((w[i] >= '0' && w[i] <= '9') ||
                  ((w[i] | 0x20) >= 'a' && (w[i] | 0x20) <= 'f') ||
                  w[i] == ':'))
                return cmd_fail(cmd, FRAME_CMD_EOPTION,
                                "bad since= (want EPOCH:OFFSET)");
        cmd->since = w + 6;
        cmd->since_len = n - 6;
        return 0;
    }
    return cmd_fail(cmd, FRAME_CMD_EOPTION,
                    "unknown or repeated option (since=ID, ids=1)");
}

int frame_parse_command(const uint8_t *p, size_t n, uint32_t max_channels,
                        struct frame_command *cmd)
{
    size_t off, start;

    memset(cmd, 0, sizeof(*cmd));
    if (n >= 3 && memcmp(p, "SUB", 3) == 0)
        cmd->verb = FRAME_CMD_SUB;
    else if (n >= 3 && memcmp(p, "PUB", 3) == 0)
        cmd->verb = FRAME_CMD_PUB;
    if (cmd->verb == 0 || (n > 3 && p[3] != ' '))
        return cmd_fail(cmd, FRAME_CMD_EVERB,
                        "unknown command (want SUB or PUB)");
    if (n <= 4)
        return cmd_fail(cmd, FRAME_CMD_ENOCHAN, "no channel");

    /* Names from p[4]: each ends at a space or at the end. Options (a
     * word with '=', which no name has) may follow the names, on SUB. */
    for (start = off = 4; off <= n; off++) {
        if (off < n && p[off] != ' ')
            continue;
        if (off == start)
            return cmd_fail(cmd, FRAME_CMD_EBADNAME,
                            "channels must be separated by single spaces");
        if (memchr(p + start, '=', off - start)) {
            int rc = cmd->n_channels
                         ? parse_option(cmd, p + start, off - start)
                         : cmd_fail(cmd, FRAME_CMD_ENOCHAN, "no channel");
            if (rc < 0)
                return rc;
            if (!cmd->channels_len)
                cmd->channels_len = start - 1 - 4;
            start = off + 1;
            continue;
        }
        if (cmd->channels_len)
            return cmd_fail(cmd, FRAME_CMD_EOPTION,
                            "options (since=ID, ids=1) go after the channels");
        if (!channel_name_valid(p + start, off - start))
            return cmd_fail(cmd, FRAME_CMD_EBADNAME,
                            "bad channel name (1-128 of A-Z a-z 0-9 - _ . : "
                            "@)");
        cmd->n_channels++;
        if (cmd->verb == FRAME_CMD_PUB && cmd->n_channels > 1)
            return cmd_fail(cmd, FRAME_CMD_ETOOMANY, "PUB takes one channel");
        if (max_channels && cmd->n_channels > max_channels)
            return cmd_fail(cmd, FRAME_CMD_ETOOMANY, "too many channels");
        start = off + 1;
    }
    if (cmd->n_channels == 0)
        return cmd_fail(cmd, FRAME_CMD_ENOCHAN, "no channel");
    cmd->channels = p + 4;
    if (!cmd->channels_len)
        cmd->channels_len = n - 4;
    return 0;
}

bool frame_command_next(const struct frame_command *cmd, size_t *pos,
                        const uint8_t **name, size_t *len)
{
    const uint8_t *sp;
    size_t a = *pos;

    if (!cmd->channels || a >= cmd->channels_len)
        return false;
    sp = memchr(cmd->channels + a, ' ', cmd->channels_len - a);
    *name = cmd->channels + a;
    *len = sp ? (size_t)(sp - *name) : cmd->channels_len - a;
    *pos = a + *len + 1;
    return true;
}

size_t frame_command_max(uint32_t max_channels)
{
    /* "SUB" and, per name, a space and CHANNEL_NAME_MAX bytes; "PUB" and
     * one name is never longer than a SUB of one. With a 64-bit size_t
     * this cannot wrap (at most 3 + 129 * (2^32 - 1)); the 64-bit product
     * is checked so that a 32-bit size_t cannot wrap either. */
    uint64_t n = 3 + (uint64_t)max_channels * (1 + CHANNEL_NAME_MAX);

    if (max_channels == 0 || n > SIZE_MAX)
        return SIZE_MAX;
    return (size_t)n;
}

size_t frame_command_max_opts(uint32_t max_channels)
{
    size_t n = frame_command_max(max_channels);

    return n > SIZE_MAX - FRAME_CMD_OPTS_MAX ? SIZE_MAX
                                             : n + FRAME_CMD_OPTS_MAX;
}
