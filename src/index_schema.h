/*
 * index_schema.h - the schema files (src/sql/NNN_*.sql), embedded at build
 * time by src/sql/embed.py. Step i brings the schema to version i.
 */
#ifndef DRIMBOX_INDEX_SCHEMA_H
#define DRIMBOX_INDEX_SCHEMA_H

struct index_schema_step {
	int version;
	const char *name;
	const char *sql;
};

extern const struct index_schema_step index_schema_steps[];
extern const int index_schema_count;

#endif
