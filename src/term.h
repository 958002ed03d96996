/* The host terminal as the guest's console: raw mode while the guest runs,
 * restored on every exit path. */
#ifndef KVMLITE_TERM_H
#define KVMLITE_TERM_H

/* Raw mode on fd 0 if it is a terminal; a no-op otherwise. */
void term_raw_enter(void);
/* Idempotent; also registered with atexit(). */
void term_restore(void);

#endif
