#ifndef SINGYEONG_CCURL_SHIM_H
#define SINGYEONG_CCURL_SHIM_H
/* libcurl (the OpenSSL build) for outgoing HTTP(S). curl_easy_setopt,
 * curl_multi_setopt and curl_easy_getinfo are variadic, which Swift cannot
 * call: each argument type we pass is wrapped here as a typed function. */
#include <curl/curl.h>

static inline CURLcode sy_curl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode sy_curl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode sy_curl_easy_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode sy_curl_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode sy_curl_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
/* CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION share this signature. */
static inline CURLcode sy_curl_easy_setopt_write_function(CURL *h, CURLoption o, curl_write_callback f) { return curl_easy_setopt(h, o, f); }
/* CURLOPT_OPENSOCKETFUNCTION: the egress policy judges each address before a socket exists. */
static inline CURLcode sy_curl_easy_setopt_opensocket_function(CURL *h, curl_opensocket_callback f) { return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, f); }
/* CURLOPT_PREREQFUNCTION: called once a connection (new or reused) is ready for the request. */
static inline CURLcode sy_curl_easy_setopt_prereq_function(CURL *h, curl_prereq_callback f) { return curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, f); }

static inline CURLMcode sy_curl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode sy_curl_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode sy_curl_multi_setopt_socket_function(CURLM *m, curl_socket_callback f) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f); }
static inline CURLMcode sy_curl_multi_setopt_timer_function(CURLM *m, curl_multi_timer_callback f) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f); }

static inline CURLcode sy_curl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode sy_curl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode sy_curl_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

/* CURLMsg.data is an anonymous union. */
static inline CURLcode sy_curl_msg_result(const CURLMsg *m) { return m->data.result; }

/* curl_sockaddr.addr is only the start of a socket address as long as addrlen
 * (an IPv6 one is longer than struct sockaddr): hand out its address. */
static inline const void *sy_curl_sockaddr_address(const struct curl_sockaddr *a) { return &a->addr; }

static const long SY_CURL_GLOBAL_DEFAULT = CURL_GLOBAL_DEFAULT;
static const int SY_CURL_SOCKET_TIMEOUT = CURL_SOCKET_TIMEOUT;
static const size_t SY_CURL_ERROR_SIZE = CURL_ERROR_SIZE;
static const curl_socket_t SY_CURL_SOCKET_BAD = CURL_SOCKET_BAD;
static const int SY_CURL_PREREQFUNC_OK = CURL_PREREQFUNC_OK;

#endif
