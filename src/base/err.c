/* err.c — text and names for the ID_E* codes of err.h. */
#include "base/err.h"

#include <errno.h>

const char *id_strerror(int code)
{
    switch (code) {
#define ID_ERR_TEXT(name, value, text) \
    case value: return text;
        ID_ERRORS(ID_ERR_TEXT)
#undef ID_ERR_TEXT
    }
    return "unknown error";
}

const char *id_errname(int code)
{
    switch (code) {
#define ID_ERR_NAME(name, value, text) \
    case value: return #name;
        ID_ERRORS(ID_ERR_NAME)
#undef ID_ERR_NAME
    }
    return "ID_EUNKNOWN";
}

int id_from_errno(int errnum)
{
    switch (errnum) {
    case 0: return ID_OK;
    case ENOMEM: return ID_ENOMEM;
    case EINVAL: return ID_EINVAL;
    case ENOENT: return ID_ENOTFOUND;
    case EEXIST: return ID_EEXIST;
    case ENOSPC: return ID_ENOSPC;
    case EDQUOT: return ID_ENOSPC;
    case ETIMEDOUT: return ID_ETIMEDOUT;
    case ECONNREFUSED: return ID_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE: return ID_ECLOSED;
    case ECANCELED: return ID_ECANCELED;
    case EMSGSIZE: return ID_ETOOBIG;
    default: return ID_EIO;
    }
}
