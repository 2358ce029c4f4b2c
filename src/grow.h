/*
 * grow.h - room for one more element at the end of an array that doubles
 * as it fills.
 */
#ifndef DRIMBOX_GROW_H
#define DRIMBOX_GROW_H

#include <stdlib.h>

/*
 * v: the array (a pointer lvalue), n: elements used, cap: elements
 * allocated (a size_t lvalue), first: the first allocation. 0 when
 * v[n] may be written; -1 when out of memory (v and cap unchanged).
 */
#define GROW(v, n, cap, first)                                                 \
	__extension__({                                                        \
		int grow_rc_ = 0;                                              \
		if ((n) >= (cap)) {                                            \
			size_t grow_cap_ = (cap) ? (cap)*2 : (first);          \
			__typeof__(v) grow_v_ =                                \
			        realloc((v), grow_cap_ * sizeof(*(v)));        \
			if (grow_v_ == NULL) {                                 \
				grow_rc_ = -1;                                 \
			} else {                                               \
				(v) = grow_v_;                                 \
				(cap) = grow_cap_;                             \
			}                                                      \
		}                                                              \
		grow_rc_;                                                      \
	})

#endif
