/* A session is offered MCP Tasks only from the version that has them. */
#include <criterion/criterion.h>

#include "../../supervisor/supervisor.h"

Test(session, tasks_only_from_2025_11_25)
{
	struct mcp_session	s = { 0 };
	const char		*v;

	cr_assert(!mcp_has_tasks(&s), "not before initialize");
	mcp_negotiate_version("2025-06-18", &s.version);
	cr_assert(!mcp_has_tasks(&s));
	mcp_negotiate_version("2025-03-26", &s.version);
	cr_assert(!mcp_has_tasks(&s));
	mcp_negotiate_version("2025-11-25", &s.version);
	cr_assert(mcp_has_tasks(&s));
	mcp_negotiate_version("1999-01-01", &v);	/* answered with the latest */
	s.version = v;
	cr_assert(mcp_has_tasks(&s));
}
