/* online_input.h — what an online request's tensors must be (docs/scheduler.md,
 * "Online requests"): each one image's input of the model as it is, already
 * preprocessed, laid out as the model's card says. The leader checks them
 * here before a worker runs them, so that a tensor the model cannot take is
 * the client's error (ID_EINVAL), never a failed run counted against the
 * model. Pure: no I/O, no state. */
#ifndef IDUNNO_SCHED_ONLINE_INPUT_H
#define IDUNNO_SCHED_ONLINE_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "idunno.pb-c.h"
#include "sched/jobs.h"

/* One image's shape as the model takes it, into dims: [C, H, W] for an NCHW
 * model, [H, W, C] for an NHWC one (C 1 for grayscale, else 3). From the
 * card resolved at train time; a model registered before cards has the
 * engine's shape of that time: input_size square, three channels, NCHW.
 * Returns 0, or ID_ENOTFOUND when the shape is not known (no card and a
 * non-square input). */
int online_model_input(const struct model_rec *m, uint32_t dims[3]);
/* The same from a card and the model's recorded input size (a model as
 * JOB_MODELS lists it; the card parsed by the caller, or zeroed). */
int online_card_input(const struct model_card *c, uint32_t input_size, uint32_t dims[3]);

/* Checks t[0..n) against the model: each shape is exactly the model's
 * (online_model_input) and each data holds that many float32 values. Returns
 * 0, or ID_EINVAL with why (for the client: the expected and the given
 * shape). */
int online_tensors_check(const struct model_rec *m, Idunno__OnlineTensor *const *t, size_t n,
                         char *why, size_t len);

/* OnlineInfer.deadline_ms of an encoded request, read without decoding it
 * (its images may be megabytes; the forwarder needs only this): the last
 * value of field 5 before the bytes end or stop making sense, 0 if none. */
uint64_t online_request_deadline_ms(const uint8_t *body, size_t len);

#endif
