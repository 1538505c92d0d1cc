"""
Administration: users, roles, passwords and API tokens.
"""

from __future__ import annotations

from urllib.parse import urlencode

from klein import Klein

from monitor.web.pages.base import Area, Shell, page
from monitor.web.params import row_id
from monitor.web.push import SESSION_COOKIE
from monitor.web.users import ROLES, UserError

#: Seconds a new API token waits for the page that shows it once.
NEW_TOKEN_TTL = 60


class AdminPages(Area):
    """
    C{/admin} and below (the admin role).
    """

    app = Klein()

    def __init__(self, shell: Shell) -> None:
        super().__init__(shell)
        #: A token just created, by session key: (name, token, expires).
        self._new_tokens: dict[str, tuple[str, str, float]] = {}

    @app.route("/admin", methods=["GET"])
    @page("admin")
    async def admin(self, request, session):
        return await self._admin_page(request, session)

    async def _admin_page(self, request, session, errors=None, status=200, values=None):
        form = self._form(request)
        new_token = None
        held = self._new_tokens.pop(session.key, None)
        if held is not None and held[2] >= self.reactor.seconds():
            new_token = {"name": held[0], "token": held[1]}
        return self._render(
            request,
            session,
            "admin.html",
            status=status,
            active="admin",
            users=await self.users.list_users(),
            tokens=await self.users.list_tokens(),
            roles=ROLES,
            errors=errors or {},
            new_token=new_token,
            values=values or {},
            done=self._one(form, "done"),
        )

    @app.route("/admin/users", methods=["POST"])
    @page("admin")
    async def admin_add_user(self, request, session):
        form = self._form(request)
        name, role, password = self._one(form, "name").strip(), self._one(form, "role"), self._one(form, "password")
        try:
            await self.users.add_user(name, role, password)
        except UserError as e:
            return await self._admin_page(
                request, session, errors={e.field: e.message}, status=400, values={"name": name, "role": role}
            )
        self.log.info("{admin} added user {user} ({role})", admin=session.user, user=name, role=role)
        return self._redirect(request, "/admin?" + urlencode({"done": f"User {name} added."}))

    @app.route("/admin/users/role", methods=["POST"])
    @page("admin")
    async def admin_set_role(self, request, session):
        form = self._form(request)
        name = self._one(form, "name")
        try:
            await self.users.set_role(name, self._one(form, "role"))
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": e.message}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": f"{name} is now {self._one(form, 'role')}."}))

    @app.route("/admin/users/password", methods=["POST"])
    @page("admin")
    async def admin_set_password(self, request, session):
        form = self._form(request)
        name = self._one(form, "name")
        try:
            await self.users.set_password(name, self._one(form, "password"))
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": f"{name}: {e.message}"}, status=400)
        if name == session.user:
            self._cookie(request, SESSION_COOKIE, "", max_age=0)
            return self._redirect(request, "/login")
        return self._redirect(request, "/admin?" + urlencode({"done": f"Password of {name} changed."}))

    @app.route("/admin/users/delete", methods=["POST"])
    @page("admin")
    async def admin_delete_user(self, request, session):
        name = self._one(self._form(request), "name")
        if name == session.user:
            return await self._admin_page(request, session, errors={"users": "You cannot delete yourself."}, status=400)
        try:
            await self.users.delete_user(name)
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": e.message}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": f"User {name} deleted."}))

    @app.route("/admin/tokens", methods=["POST"])
    @page("admin")
    async def admin_create_token(self, request, session):
        name = self._one(self._form(request), "token_name")
        try:
            token = await self.users.create_token(name, session.user)
        except UserError as e:
            return await self._admin_page(request, session, errors={e.field: e.message}, status=400)
        # Shown once, on the page this redirects to (a reload shows it no
        # more); held in memory for that one GET only.
        self._new_tokens[session.key] = (name.strip(), token, self.reactor.seconds() + NEW_TOKEN_TTL)
        return self._redirect(request, "/admin?created=token")

    @app.route("/admin/tokens/revoke", methods=["POST"])
    @page("admin")
    async def admin_revoke_token(self, request, session):
        token_id = row_id(self._one(self._form(request), "id"))
        if token_id is None or not await self.users.revoke_token(token_id, session.user):
            return await self._admin_page(request, session, errors={"tokens": "No such live token."}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": "Token revoked."}))
