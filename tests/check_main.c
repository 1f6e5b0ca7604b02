/* check_main.c - the main() of every unit-test binary.
 *
 * Each tests/<room>/test_<object>.c defines test_suite(); this runs it with
 * Check and prints Check's summary line, which tests/run.sh counts.
 */
#include <check.h>
#include <stdlib.h>

Suite *test_suite(void);

int main(void)
{
    SRunner *runner = srunner_create(test_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
