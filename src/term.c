#include "term.h"

#include <stdbool.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

static struct termios saved;
static bool raw;

void term_restore(void)
{
	if (raw) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		raw = false;
	}
}

void term_raw_enter(void)
{
	static bool registered;
	if (raw || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved) < 0)
		return;
	struct termios t = saved;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0)
		return;
	raw = true;
	if (!registered) {
		atexit(term_restore);
		registered = true;
	}
}
