/* SPDX-License-Identifier: MIT */
/*
 * zh_cli.h: the small helpers the command-line tools share: strict decimal option values, the
 * destinations a tool may send to, and a msgpack object printed as JSON.
 */
#ifndef ZH_CLI_H
#define ZH_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <netinet/in.h>

/* msgpack-c's msgpack_object; a tool that prints one includes <msgpack.h> itself. */
struct msgpack_object;

/*
 * A whole decimal number in [min, max]: digits only (no sign, no trailing text), no overflow.
 * Returns 0 and sets *out, or -EINVAL and leaves *out alone.
 */
int zh_cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out);
int zh_cli_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out);
/* A finite number (strtod's syntax, nothing after it) in [min, max]; 0 or -EINVAL as above. */
int zh_cli_parse_double(const char *text, double min, double max, double *out);

/*
 * Whether a tool may send to (or bind) `a`, in network byte order: only the benchmarking range
 * 198.18.0.0/15 (RFC 2544; the dev network lives there) and the loopback 127.0.0.0/8.
 */
int zh_cli_dest_allowed(struct in_addr a);

/*
 * Print a msgpack object as JSON that any reader takes, whatever bytes it holds: strings escaped,
 * each byte that does not begin well-formed UTF-8 as U+FFFD; floats with the digits that bring them
 * back (9 for float32, 17 for float64) and a ".0" when they would read as integers, NaN and the
 * infinities as null; bin as a hex string, ext as {"ext_type": n, "data": hex}; a key that is not a
 * string is printed as JSON and that text becomes the key; anything nested deeper than 64 levels as
 * null. Exits with status 3 (the tools' I/O-error status) when memory for a key runs out.
 */
void zh_cli_print_json(FILE *out, const struct msgpack_object *o);

#endif /* ZH_CLI_H */
