/* test_ctl_service.c — the pure parts of the leader-service layer: the rule
 * that settles an op (ctl_op_verdict) and the names its "bad <Message>"
 * answers take from the descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"
#include "ctl/service.h"
#include "idunno.pb-c.h"

/* Leadership moving always hands the request on, whatever the op's flags. */
static void test_notleader_forwards(void **state)
{
    (void)state;
    assert_int_equal(ctl_op_verdict(ID_ENOTLEADER, 0), CTL_VERDICT_FORWARD);
    assert_int_equal(ctl_op_verdict(ID_ENOTLEADER, CTL_OP_NOTFOUND_TO_DONE), CTL_VERDICT_FORWARD);
}

static void test_success_reaches_done(void **state)
{
    (void)state;
    assert_int_equal(ctl_op_verdict(0, 0), CTL_VERDICT_DONE);
    assert_int_equal(ctl_op_verdict(0, CTL_OP_NOTFOUND_TO_DONE), CTL_VERDICT_DONE);
    assert_int_equal(ctl_op_verdict(0, CTL_OP_NO_NET), CTL_VERDICT_DONE);
}

/* ID_ENOTFOUND is an error unless the op asked for it. */
static void test_notfound_is_a_choice(void **state)
{
    (void)state;
    assert_int_equal(ctl_op_verdict(ID_ENOTFOUND, 0), CTL_VERDICT_FAIL);
    assert_int_equal(ctl_op_verdict(ID_ENOTFOUND, CTL_OP_NO_NET), CTL_VERDICT_FAIL);
    assert_int_equal(ctl_op_verdict(ID_ENOTFOUND, CTL_OP_NOTFOUND_TO_DONE), CTL_VERDICT_DONE);
}

static void test_other_errors_fail(void **state)
{
    (void)state;
    const int codes[] = {ID_EINVAL, ID_EEXIST,    ID_ETIMEDOUT, ID_ESHUTDOWN,
                         ID_ENOMEM, ID_ENOLEADER, ID_ETOOBIG,   ID_EVERSION};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_int_equal(ctl_op_verdict(codes[i], 0), CTL_VERDICT_FAIL);
        assert_int_equal(ctl_op_verdict(codes[i], CTL_OP_NOTFOUND_TO_DONE), CTL_VERDICT_FAIL);
    }
}

/* The decoding prologue answers "bad <short name>": the names the handlers
 * used to spell out by hand. */
static void test_bad_message_names(void **state)
{
    (void)state;
    assert_string_equal(idunno__sdfs_chunk__descriptor.short_name, "SdfsChunk");
    assert_string_equal(idunno__sdfs_store_report__descriptor.short_name, "SdfsStoreReport");
    assert_string_equal(idunno__job_launch__descriptor.short_name, "JobLaunch");
    assert_string_equal(idunno__query_run__descriptor.short_name, "QueryRun");
    assert_string_equal(idunno__ctl_status_query__descriptor.short_name, "CtlStatusQuery");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notleader_forwards),   cmocka_unit_test(test_success_reaches_done),
        cmocka_unit_test(test_notfound_is_a_choice), cmocka_unit_test(test_other_errors_fail),
        cmocka_unit_test(test_bad_message_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
