#ifndef SINGYEONG_CSIMDJSON_H
#define SINGYEONG_CSIMDJSON_H
/* C API over simdjson (C++), so Swift can call it without C++ interop. */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes simdjson may read past the end of its input; every buffer handed to
 * sy_json_* must have this many readable bytes after `length`. */
size_t sy_json_padding(void);

#ifdef __cplusplus
}
#endif
#endif
