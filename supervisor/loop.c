/*
 * The one event loop of the heavyd process.  Every part of the supervisor
 * runs its events on it; server.c makes it (with the backend stdio
 * allows) and runs it.  It lives here, apart, so that the engine's files
 * need nothing from the server that drives them.
 */
#include "supervisor.h"

struct event_base	*ev_base;
