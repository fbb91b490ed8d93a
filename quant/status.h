/* status.h — status codes and error messages shared by every qkit module.
 *
 * Contract: functions that can fail return a qk_status (0 ok, negative on failure) and, when given
 * a non-NULL qk_err, leave a one-line message naming the file, the object and the problem.
 * It lives in quant/ because quant/ is the lowest module (formats/ and everything above include it). */
#ifndef QKIT_STATUS_H
#define QKIT_STATUS_H

typedef enum {
    QK_OK = 0,
    QK_EIO = -1,          /* the operating system refused: open, read, write, rename */
    QK_ENOMEM = -2,       /* an allocation failed */
    QK_EFORMAT = -3,      /* bytes on disk or arguments are malformed */
    QK_EUNSUPPORTED = -4, /* well-formed but not something qkit handles */
    QK_ERANGE = -5,       /* a value is out of its allowed range (NaN/Inf, sizes, counts) */
    QK_EINTERNAL = -6,    /* a bug in qkit */
    QK_ENOTFOUND = -7,    /* a named file, or a folder on its path, does not exist (ENOENT, ENOTDIR):
                           * callers that probe for optional files test this, never the message */
    QK_EALIAS = -8,       /* an output path names one of the inputs (same file after links): writing
                           * would destroy the input; bad usage, never attempted */
} qk_status;

#define QK_ERR_MSG_MAX 512

typedef struct {
    char msg[QK_ERR_MSG_MAX];
} qk_err;

/* Formats the message into err (if non-NULL) and returns code, so callers can write
 * `return qk_err_set(err, QK_EFORMAT, "%s: ...", path);`. */
int qk_err_set(qk_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "prefix: " to an existing message (e.g. the file name added by a caller). */
void qk_err_prefix(qk_err *err, const char *prefix);

/* Short name of a status code ("I/O error", "malformed input" ...). */
const char *qk_status_str(int code);

/* A string from an untrusted file as one-line messages quote it: control bytes become '?' and
 * long ones are cut ("..."). Returned by value so it can sit inside a printf call: qk_show(n).s */
typedef struct {
    char s[100];
} qk_shown;
qk_shown qk_show(const char *v);

#endif
