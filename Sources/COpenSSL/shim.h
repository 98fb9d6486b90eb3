#ifndef SINGYEONG_COPENSSL_SHIM_H
#define SINGYEONG_COPENSSL_SHIM_H
/* OpenSSL 3 headers; the SSL_CTX_* macros Swift cannot import are wrapped. */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>

static inline long sy_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline int sy_ssl_ctx_set_min_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_min_proto_version(ctx, v); }
static inline int sy_ssl_ctx_set_max_proto(SSL_CTX *ctx, int v) { return (int)SSL_CTX_set_max_proto_version(ctx, v); }
static inline long sy_ssl_ctx_set_options(SSL_CTX *ctx, long opts) { return (long)SSL_CTX_set_options(ctx, (uint64_t)opts); }
static inline long sy_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long m) { return SSL_CTX_set_session_cache_mode(ctx, m); }

static const long SY_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;
static const long SY_SSL_MODE_ENABLE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long SY_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long SY_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const long SY_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const long SY_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const long SY_SSL_SESS_CACHE_OFF = SSL_SESS_CACHE_OFF;
static const int SY_TLS1_2_VERSION = TLS1_2_VERSION;
static const int SY_TLS1_3_VERSION = TLS1_3_VERSION;

#endif
