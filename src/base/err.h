/* err.h — the one error scheme of IDunno.
 *
 * Every fallible function returns 0 on success or a negative ID_E* code from the
 * table below. id_strerror() gives the text for any code. Long-lived objects keep
 * a char errmsg[ID_ERRMSG_LEN] for detail; the code says what kind of failure it
 * was, the message says which file, peer or field.
 */
#ifndef IDUNNO_BASE_ERR_H
#define IDUNNO_BASE_ERR_H

#define ID_ERRMSG_LEN 256

/* X(name, value, text): the single source of truth for codes and their text. */
#define ID_ERRORS(X)                                    \
    X(ID_OK, 0, "success")                              \
    X(ID_ENOMEM, -1, "out of memory")                   \
    X(ID_EINVAL, -2, "invalid argument")                \
    X(ID_EIO, -3, "input/output error")                 \
    X(ID_EPROTO, -4, "malformed message")               \
    X(ID_ECRC, -5, "checksum mismatch")                 \
    X(ID_ETOOBIG, -6, "message too large")              \
    X(ID_ETIMEDOUT, -7, "timed out")                    \
    X(ID_ECONNREFUSED, -8, "connection refused")        \
    X(ID_ECLOSED, -9, "connection closed")              \
    X(ID_ENOTFOUND, -10, "not found")                   \
    X(ID_EEXIST, -11, "already exists")                 \
    X(ID_ENOLEADER, -12, "no coordinator")              \
    X(ID_ENOTLEADER, -13, "not the coordinator")        \
    X(ID_ESHUTDOWN, -14, "shutting down")               \
    X(ID_EBUSY, -15, "busy, try again")                 \
    X(ID_ENOSPC, -16, "no space left on device")        \
    X(ID_EUNKNOWNTYPE, -17, "unknown message type")     \
    X(ID_EVERSION, -18, "unsupported protocol version") \
    X(ID_EUNAVAIL, -19, "not enough live nodes")        \
    X(ID_ECANCELED, -20, "canceled")                    \
    X(ID_EMODEL, -21, "model error")                    \
    X(ID_EIMAGE, -22, "image error")                    \
    X(ID_EINTERNAL, -23, "internal error")              \
    X(ID_EAUTH, -24, "authentication failed (wrong or missing cluster key)")

enum id_err {
#define ID_ERR_ENUM(name, value, text) name = value,
    ID_ERRORS(ID_ERR_ENUM)
#undef ID_ERR_ENUM
};

/* Text for an ID_E* code; never NULL ("unknown error" for codes not in the table). */
const char *id_strerror(int code);

/* The symbolic name of a code ("ID_ETIMEDOUT"), for logs and JSON; never NULL. */
const char *id_errname(int code);

/* Maps an errno value (positive) to the closest ID_E* code. */
int id_from_errno(int errnum);

#endif
