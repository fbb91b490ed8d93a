#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Control bytes (a newline in a tensor name, say) become '?': a message is always one line,
 * whatever names from files it quotes. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

int qk_err_set(qk_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
    }
    return code;
}

void qk_err_prefix(qk_err *err, const char *prefix)
{
    if (!err || !prefix)
        return;
    char tmp[QK_ERR_MSG_MAX];
    size_t n = strlen(prefix);
    if (n > QK_ERR_MSG_MAX - 3)
        n = QK_ERR_MSG_MAX - 3;
    memcpy(tmp, prefix, n);
    memcpy(tmp + n, ": ", 2);
    size_t room = QK_ERR_MSG_MAX - n - 3, m = strnlen(err->msg, room);
    memcpy(tmp + n + 2, err->msg, m);
    tmp[n + 2 + m] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
}

const char *qk_status_str(int code)
{
    switch (code) {
    case QK_OK: return "ok";
    case QK_EIO: return "I/O error";
    case QK_ENOMEM: return "out of memory";
    case QK_EFORMAT: return "malformed input";
    case QK_EUNSUPPORTED: return "unsupported";
    case QK_ERANGE: return "value out of range";
    case QK_ENOTFOUND: return "not found";
    case QK_EALIAS: return "output would replace an input";
    default: return "internal error";
    }
}

qk_shown qk_show(const char *v)
{
    qk_shown r;
    size_t i = 0, max = sizeof r.s - 4;
    for (; v[i] && i < max; i++)
        r.s[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
    if (v[i])
        memcpy(r.s + i, "...", 3), i += 3;
    r.s[i] = 0;
    return r;
}
