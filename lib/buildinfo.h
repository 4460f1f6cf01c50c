/* buildinfo.h - what a running binary is: its version, compiler and libraries, for `--version`,
 * the start-up log line and the `bus_build_info` metric; and the standard `process_*` metrics
 * (CPU, memory, descriptors, start time) every /metrics carries.
 *
 * The version comes from git at build time (`git describe --always --dirty`, passed by the
 * Makefile as BUS_VERSION); a build outside git says "unknown". */
#ifndef BUILDINFO_H
#define BUILDINFO_H

#include <stdio.h>

/* The product's version, e.g. "v0.3-12-gabc1234" (static string). */
const char *buildinfo_version(void);
/* The compiler that built this binary, e.g. "gcc 12.2.0" (static string). */
const char *buildinfo_compiler(void);
/* Prints the `--version` text for program name: the version on the first line, then the
 * compiler and the linked libraries' versions. */
void buildinfo_print(FILE *out, const char *name);
/* Registers bus_build_info{version,compiler,librdkafka,libpq,libmicrohttpd ("builtin")} 1 and the
 * process_* metrics (refreshed before each render). Call once, from app_init; later calls do
 * nothing. Thread-safe. */
void buildinfo_register_metrics(void);

#endif
