#include "csimdjson.h"
#include <simdjson.h>

extern "C" size_t sy_json_padding(void) { return simdjson::SIMDJSON_PADDING; }
