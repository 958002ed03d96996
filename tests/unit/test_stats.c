#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "stats.h"

static uint64_t twice(const void *opaque, int index)
{
	return 2 * ((const uint64_t *)opaque)[index];
}

static void test_groups_print_and_json_in_order(void **state)
{
	(void)state;
	static const char *const a_names[] = { "reads", "writes" };
	static const char *const b_names[] = { "kicks" };
	uint64_t a[2] = { 3, 40 }, b[1] = { 7 };
	struct stats_group *list = NULL;
	assert_int_equal(stats_add(&list, "blk", 2, a_names, stats_read_array, a), 0);
	assert_int_equal(stats_add(&list, "net", 1, b_names, twice, b), 0);
	a[1] = 41; /* read when reported, not when added */

	char json[128];
	int n = stats_json(list, json, sizeof(json));
	assert_string_equal(json, "\"blk\":{\"reads\":3,\"writes\":41},\"net\":{\"kicks\":14}");
	assert_int_equal(n, (int)strlen(json));
	assert_int_equal(stats_json(list, json, 10), -ENOSPC);

	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	stats_print(list, f);
	fclose(f);
	assert_string_equal(text, "blk: reads=3 writes=41\nnet: kicks=14\n");
	free(text);
	stats_free(&list);
	assert_null(list);
	assert_int_equal(stats_json(NULL, json, sizeof(json)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_groups_print_and_json_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
