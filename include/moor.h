/*
 * moor.h - the public API of libmoor. The only installed header.
 *
 * Contract, for every function here:
 *  - Errors are returned as negative errno values; the global errno is
 *    never part of the contract.
 *  - Ownership words: "borrows" (the caller keeps it), "takes" (ownership
 *    moves in), "returns a new reference", "caller frees with ...".
 *  - Every type is opaque; its layout is not part of the contract.
 *
 * Status: the foundation release exposes memory accounting and the
 * version. The connection API (servers and clients of WebSocket, SSE,
 * framed TCP, with send/backpressure callbacks) is added with the
 * WebSocket work; until then the `moor` program is the way to use moor.
 */
#ifndef MOOR_H
#define MOOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOOR_API __attribute__((visibility("default")))

/* Returns the library version, e.g. "0.1.0". Static storage. */
MOOR_API const char *moor_version(void);

/* Live bytes allocated by moor (all tags, all threads). After every moor
 * object is freed, this is 0. */
MOOR_API int64_t moor_mem_live_bytes(void);

/* Writes the memory accounting as JSON (live/total per tag) into out,
 * NUL-terminated, truncated to cap. Returns the length the full document
 * needs (excluding the NUL), or -ENOMEM. */
MOOR_API long moor_mem_json(char *out, unsigned long cap);

#ifdef __cplusplus
}
#endif

#endif
