/*
 * cli.h - shared by the files of the command-line tool (drimbox.c,
 * drimbox_audit.c).
 */
#ifndef DRIMBOX_CLI_H
#define DRIMBOX_CLI_H

struct config;
struct index;

/* Opens the daemon's index read-only: 0, or -1 (said on stderr). */
int cli_open_index(const struct config *cfg, struct index **ix);

/* drimbox audit [verify] ... and drimbox stats ...: exit statuses. */
int cli_audit(const struct config *cfg, int argc, char **argv);
int cli_stats(const struct config *cfg, int argc, char **argv);

#endif
