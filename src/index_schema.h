/*
 * index_schema.h - the schema files (src/sql/<backend>/NNN_*.sql),
 * embedded at build time by src/sql/embed.py. Step i brings the schema to
 * version i; the two backends have the same versions.
 */
#ifndef DRIMBOX_INDEX_SCHEMA_H
#define DRIMBOX_INDEX_SCHEMA_H

struct index_schema_step {
	int version;
	const char *name;
	const char *sql;
};

extern const struct index_schema_step index_schema_sqlite[];
extern const int index_schema_sqlite_count;
extern const struct index_schema_step index_schema_pg[];
extern const int index_schema_pg_count;

#endif
