"""
Logging in and out, the first-run setup page, and one's own account.
"""

from __future__ import annotations

import secrets

from klein import Klein
from twisted.internet.defer import ensureDeferred

from monitor.command import twistd_command
from monitor.web.pages.base import Area, Shell, safe_next, page
from monitor.web.push import SESSION_COOKIE
from monitor.web.users import LOGIN_FORM_TTL, HashingBusy, LoginGuard, UserError, check_name, check_new_password

#: The login form's pre-session cookie (there is no session yet; see
#: L{monitor.web.users.Users.open_login_form}).
LOGIN_COOKIE = "monitor_login"
#: The same for the first-run setup form.
SETUP_COOKIE = "monitor_setup"

#: What L{AuthPages._check_password} returns for a refused attempt.
_THROTTLED = object()


class AuthPages(Area):
    """
    C{/}, C{/login}, C{/logout}, C{/setup/<token>} and C{/account}.
    """

    app = Klein()

    def __init__(self, shell: Shell, setup=None, config_path: str = "etc/monitor.toml") -> None:
        super().__init__(shell)
        #: The first-run setup link (L{monitor.web.setup.SetupLink}), if any.
        self.setup = setup
        #: The configuration file, for the command that adds a user.
        self.config_path = config_path
        self.guard = LoginGuard(shell.reactor)

    @app.route("/", methods=["GET"])
    def home(self, request):
        return self._redirect(request, "/dashboard")

    @app.route("/login", methods=["GET"])
    def login_page(self, request):
        return ensureDeferred(self._login_page(request))

    async def _login_page(self, request, status=200, error="", name=""):
        if status == 200 and await self.session(request) is not None:
            return self._redirect(request, "/dashboard")
        token, csrf = await self.users.open_login_form()
        self._cookie(request, LOGIN_COOKIE, token, max_age=LOGIN_FORM_TTL)
        first_run = (await self.users.count_users()) == 0
        next_page = self._one(self._form(request), "next")
        return self._render(
            request,
            None,
            "login.html",
            status=status,
            login_csrf=csrf,
            error=error,
            name=name,
            next=safe_next(next_page),
            first_run=first_run,
            setup_file=self.setup.path if self.setup is not None else "",
            add_user=self._add_user_hint(),
        )

    def _add_user_hint(self, role: str = "admin") -> str:
        """
        The command that makes the first admin on the hub's machine, as it
        works when pasted there: this hub's twistd and configuration file.
        """
        return twistd_command(self.config_path, "--add-user", "NAME", "--role", role)

    # -- first run -----------------------------------------------------------

    @app.route("/setup/<token>", methods=["GET"])
    def setup_page(self, request, token):
        return ensureDeferred(self._setup_page(request, token))

    async def _setup_page(self, request, token, status=200, errors=None, name=""):
        if self.setup is None or not await self.setup.valid(token):
            return self._setup_gone(request)
        csrf = secrets.token_urlsafe(32)
        self._cookie(request, SETUP_COOKIE, csrf, max_age=3600)
        return self._render(
            request,
            None,
            "setup.html",
            status=status,
            setup_csrf=csrf,
            token=token,
            errors=errors or {},
            name=name,
            error="",
        )

    def _setup_gone(self, request) -> bytes:
        # The same answer for a used link and a wrong one: nothing to guess.
        return self._render(request, None, "setup-gone.html", status=404, add_user=self._add_user_hint("viewer"))

    @app.route("/setup/<token>", methods=["POST"])
    def setup_submit(self, request, token):
        return ensureDeferred(self._setup_submit(request, token))

    async def _setup_submit(self, request, token):
        if self.setup is None or not await self.setup.valid(token):
            return self._setup_gone(request)
        cookie = (request.getCookie(SETUP_COOKIE.encode("ascii")) or b"").decode("ascii", "replace")
        problem = (
            self._forged(request, cookie)
            if cookie
            else "The setup form's security token (CSRF) is missing. Reload the page and try again."
        )
        if problem:
            return self._error(request, None, 403, problem)
        form = self._form(request)
        name, password, again = self._one(form, "name").strip(), self._one(form, "password"), self._one(form, "again")
        errors = {}
        for check, value in ((check_name, name), (check_new_password, password)):
            try:
                check(value)
            except UserError as e:
                errors[e.field] = e.message
        if "password" not in errors and password != again:
            errors["again"] = "The two passwords differ."
        if not errors:
            try:
                # One submission at a time, and the store checks again.
                made = await self.setup.lock.run(self._first_admin, token, name, password)
            except UserError as e:
                errors[e.field] = e.message
            else:
                if not made:
                    return self._setup_gone(request)
        if errors:
            return await self._setup_page(request, token, 400, errors, name)
        self.setup.close()
        user_id, name, _ = await self.users.authenticate(name, password)
        session, _ = await self.users.open_session(user_id)
        self._cookie(request, SESSION_COOKIE, session)
        self._cookie(request, SETUP_COOKIE, "", max_age=0)
        self.log.info("first admin {user} created on the setup page", user=name)
        return self._redirect(request, "/dashboard")

    async def _first_admin(self, token: str, name: str, password: str) -> bool:
        if not await self.setup.valid(token):
            return False
        return await self.users.add_first_admin(name, password)

    @app.route("/login", methods=["POST"])
    def login(self, request):
        return ensureDeferred(self._login(request))

    async def _login(self, request):
        form = self._form(request)
        # The pre-session made when the form was served (login CSRF).
        cookie = request.getCookie(LOGIN_COOKIE.encode("ascii")) or b""
        expected = await self.users.take_login_form(cookie.decode("ascii", "replace"))
        problem = self._forged(request, expected) if expected else "missing"
        if problem:
            return self._error(
                request,
                None,
                403,
                "The login form's security token (CSRF) is missing or out of date. Reload the page and try again.",
            )
        name = self._one(form, "name").strip()
        password = self._one(form, "password")
        address = request.getClientAddress()
        where = getattr(address, "host", "?")
        try:
            user = await self._check_password(name, password, where)
        except HashingBusy:
            request.setHeader(b"retry-after", b"5")
            return await self._login_page(
                request, 503, "The hub is checking many passwords at once. Try again in a moment.", name
            )
        if user is _THROTTLED:
            self.log.warn("login throttled for {user} from {address}", user=name, address=where)
            return await self._login_page(
                request, 429, "Too many failed attempts. Wait a few minutes and try again.", name
            )
        if user is None:
            self.log.info("failed login for {user} from {address}", user=name, address=where)
            return await self._login_page(request, 401, "Wrong user name or password.", name)
        user_id, name, role = user
        token, _ = await self.users.open_session(user_id)
        self._cookie(request, SESSION_COOKIE, token)
        self._cookie(request, LOGIN_COOKIE, "", max_age=0)
        self.log.info("{user} logged in from {address}", user=name, address=where)
        return self._redirect(request, safe_next(self._one(form, "next")))

    async def _check_password(self, name: str, password: str, address: str):
        """
        L{Users.authenticate} behind the login guard: the attempt is
        counted before the password is hashed, so a burst cannot outrun
        the count.  C{_THROTTLED} if refused without a check.
        """
        attempt = self.guard.admit(name, address)
        if attempt is None:
            return _THROTTLED
        user = None
        try:
            # HashingBusy goes up: a 503 from the login or the page wrapper.
            user = await self.users.authenticate(name, password)
        finally:
            attempt.finish(user is not None)
        return user

    @app.route("/logout", methods=["POST"])
    @page()
    async def logout(self, request, session):
        await self.users.close_session(session.key)
        self._cookie(request, SESSION_COOKIE, "", max_age=0)
        return self._redirect(request, "/login")

    # -- account -------------------------------------------------------------

    @app.route("/account", methods=["GET"])
    @page()
    async def account(self, request, session, errors=None, done=False):
        return self._render(request, session, "account.html", errors=errors or {}, done=done, active="account")

    @app.route("/account/password", methods=["POST"])
    @page()
    async def change_password(self, request, session):
        form = self._form(request)
        errors = {}
        where = getattr(request.getClientAddress(), "host", "?")
        checked = await self._check_password(session.user, self._one(form, "current"), where)
        if checked is _THROTTLED:
            errors["current"] = "Too many failed attempts. Wait a few minutes and try again."
        elif checked is None:
            errors["current"] = "That is not your current password."
        elif self._one(form, "new") != self._one(form, "again"):
            errors["again"] = "The two new passwords differ."
        else:
            try:
                await self.users.set_password(session.user, self._one(form, "new"))
            except UserError as e:
                errors["new"] = e.message
        if errors:
            status = 429 if checked is _THROTTLED else 400
            return self._render(
                request, session, "account.html", status=status, errors=errors, done=False, active="account"
            )
        # The new password ended every session, this one too.
        self._cookie(request, SESSION_COOKIE, "", max_age=0)
        return self._redirect(request, "/login")
