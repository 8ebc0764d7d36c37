// Typed, non-variadic wrappers over libcurl's variadic setopt/getinfo calls, which Swift
// cannot call directly. Every wrapper is prefixed `ccurl_` and takes exactly one value type,
// so the Swift side never passes a value of the wrong width to curl.
#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H

#include <curl/curl.h>
#include <signal.h>
#include <stdint.h>

typedef size_t (*ccurl_data_callback)(char *_Nonnull ptr, size_t size, size_t nmemb, void *_Nullable userdata);
typedef int (*ccurl_xferinfo_callback)(void *_Nullable clientp, curl_off_t dltotal, curl_off_t dlnow,
                                       curl_off_t ultotal, curl_off_t ulnow);

static inline CURLcode ccurl_easy_setopt_long(CURL *_Nonnull handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode ccurl_easy_setopt_offset(CURL *_Nonnull handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode ccurl_easy_setopt_string(CURL *_Nonnull handle, CURLoption option, const char *_Nullable value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode ccurl_easy_setopt_pointer(CURL *_Nonnull handle, CURLoption option, void *_Nullable value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode ccurl_easy_setopt_slist(CURL *_Nonnull handle, CURLoption option, struct curl_slist *_Nullable value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode ccurl_easy_setopt_write_function(CURL *_Nonnull handle, ccurl_data_callback _Nullable fn) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, fn);
}
static inline CURLcode ccurl_easy_setopt_header_function(CURL *_Nonnull handle, ccurl_data_callback _Nullable fn) {
    return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, fn);
}
static inline CURLcode ccurl_easy_setopt_xferinfo_function(CURL *_Nonnull handle, ccurl_xferinfo_callback _Nullable fn) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, fn);
}
static inline CURLcode ccurl_easy_getinfo_long(CURL *_Nonnull handle, CURLINFO info, long *_Nonnull out) {
    return curl_easy_getinfo(handle, info, out);
}
static inline CURLcode ccurl_easy_getinfo_offset(CURL *_Nonnull handle, CURLINFO info, curl_off_t *_Nonnull out) {
    return curl_easy_getinfo(handle, info, out);
}
static inline CURLcode ccurl_easy_getinfo_pointer(CURL *_Nonnull handle, CURLINFO info, void *_Nullable *_Nonnull out) {
    return curl_easy_getinfo(handle, info, out);
}
/// A blob option (e.g. CURLOPT_CAINFO_BLOB); curl copies the bytes, so they need not outlive the call.
static inline CURLcode ccurl_easy_setopt_blob_copy(CURL *_Nonnull handle, CURLoption option,
                                                   const void *_Nonnull data, size_t length) {
    struct curl_blob blob = { (void *)data, length, CURL_BLOB_COPY };
    return curl_easy_setopt(handle, option, &blob);
}
static inline CURLcode ccurl_easy_getinfo_string(CURL *_Nonnull handle, CURLINFO info, char *_Nullable *_Nonnull out) {
    return curl_easy_getinfo(handle, info, out);
}
static inline CURLMcode ccurl_multi_setopt_long(CURLM *_Nonnull multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}
/// Process-wide: a peer that closes a connection must never kill the daemon with SIGPIPE.
static inline void ccurl_ignore_sigpipe(void) {
    signal(SIGPIPE, SIG_IGN);
}
/// Reads the fields of a finished-transfer message without Swift touching the C union.
static inline CURL *_Nullable ccurl_msg_done_handle(CURLMsg *_Nonnull msg, CURLcode *_Nonnull result) {
    if (msg->msg != CURLMSG_DONE) { return NULL; }
    *result = msg->data.result;
    return msg->easy_handle;
}

#endif
