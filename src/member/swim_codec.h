/* swim_codec.h — SwimPacket (proto/idunno.proto) <-> struct swim_packet. */
#ifndef IDUNNO_MEMBER_SWIM_CODEC_H
#define IDUNNO_MEMBER_SWIM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "member/swim.h"

/* Encodes p into buf (cap bytes). Returns the length, or ID_ETOOBIG. */
int swim_encode(const struct swim_packet *p, uint8_t *buf, size_t cap);

/* Decodes a datagram body into *p. Rejects (ID_EPROTO) anything that is not a
 * well-formed packet: undecodable protobuf, unknown kind or state, strings too
 * long for the fixed fields, too many updates, member names outside
 * swim_name_valid(), addresses with control characters or spaces. *p is unspecified on error. */
int swim_decode(const uint8_t *buf, size_t len, struct swim_packet *p);

#endif
