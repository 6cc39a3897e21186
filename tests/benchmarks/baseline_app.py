"""The hand-written baseline for the API benchmark: FastAPI + SQLAlchemy
Core over one `opportunity` table with the same fields and the same
validation as the benchmark's Loom object, written the way a careful
developer would without a platform.

It matches `tests/benchmarks/bundle/objects/opportunity.json`: name
required (at most 255 characters), amount a currency (2 decimals, not
negative), stage one of six options with a default and an index, close
date a date, the (stage, amount) index; unknown keys are refused. Records
carry the same system fields as Loom's (version, timestamps, created_by,
updated_by, owner), so both answer the same JSON shape. Like the Loom API,
every request must carry `Authorization: Bearer TOKEN`, checked against a
table of token hashes joined to active users (one indexed SELECT per
request, in a FastAPI dependency). Like `loom
serve`, it logs each request at level info. Loom's recycle bin, history
and outbox have no counterpart here: they are Loom's own work to pay for.

    python baseline_app.py DATABASE_URL token          -> prints a new API token
    python baseline_app.py DATABASE_URL PORT [LOG_LEVEL]
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Literal

import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

STAGES = ("qualification", "needs_analysis", "proposal", "negotiation", "won", "lost")

meta = sa.MetaData()
opportunity = sa.Table(
    "opportunity", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("amount", sa.Numeric(18, 2)),
    sa.Column("stage", sa.String(63), nullable=False, index=True),
    sa.Column("close_date", sa.Date),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(32)),
    sa.Column("updated_by", sa.String(32)),
    sa.Column("owner", sa.String(32)),
    sa.Index("ix_opportunity_stage_amount", "stage", "amount"),
)
users = sa.Table(
    "users", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
)
api_tokens = sa.Table(
    "api_tokens", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


class OpportunityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    stage: Literal[STAGES] = "qualification"  # type: ignore[valid-type]
    close_date: date | None = None


class OpportunityPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=255)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    stage: Literal[STAGES] | None = None  # type: ignore[valid-type]
    close_date: date | None = None


def _out(row) -> dict:
    data = dict(row._mapping)
    data["amount"] = float(data["amount"]) if data["amount"] is not None else None
    for key in ("close_date", "created_at", "updated_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    return data


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The token check alone, for apps that serve tables of their own (raw_list_app.py).
AUTH_TABLES = [users, api_tokens]


def open_engine(url: str, tables: list[sa.Table] | None = None) -> sa.Engine:
    """An engine on `url`, with `tables` (all of this app's by default) created if missing."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")
    meta.create_all(engine, tables=tables)
    return engine


def create_token(url: str) -> str:
    """A user and an API token acting as it; only the token's hash is kept."""
    engine = open_engine(url, AUTH_TABLES)
    token = secrets.token_urlsafe(32)
    user_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(users.insert().values(id=user_id, username=f"bench-{user_id[:8]}", role="admin", is_active=True))
        conn.execute(api_tokens.insert().values(id=uuid.uuid4().hex, user_id=user_id, token_hash=_token_hash(token)))
    engine.dispose()
    return token


def bearer_user(engine: sa.Engine):
    """The FastAPI dependency answering the (id, role) of the request's
    active token, or 401: one indexed SELECT per request."""

    def current_user(authorization: str | None = Header(default=None)):
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        with engine.connect() as conn:
            user = conn.execute(
                sa.select(users.c.id, users.c.role).join(api_tokens, api_tokens.c.user_id == users.c.id)
                .where(api_tokens.c.token_hash == _token_hash(token.strip()), api_tokens.c.revoked_at.is_(None),
                       users.c.is_active.is_(True))).first()
        if user is None:
            raise HTTPException(401, headers={"WWW-Authenticate": "Bearer"})
        return user

    return current_user


def create_app(url: str) -> FastAPI:
    engine = open_engine(url)
    app = FastAPI()
    current_user = bearer_user(engine)

    @app.post("/opportunity", status_code=201)
    def create(body: OpportunityIn, user=Depends(current_user)):
        now = datetime.now(timezone.utc)
        values = {**body.model_dump(), "id": uuid.uuid4().hex, "version": 1, "created_at": now, "updated_at": now,
                  "created_by": user.id, "updated_by": user.id, "owner": user.id}
        with engine.begin() as conn:
            conn.execute(opportunity.insert().values(values))
            return _out(conn.execute(sa.select(opportunity).where(opportunity.c.id == values["id"])).one())

    @app.get("/opportunity/{record_id}")
    def get(record_id: str, response: Response, user=Depends(current_user)):
        with engine.connect() as conn:
            row = conn.execute(sa.select(opportunity).where(opportunity.c.id == record_id)).first()
        if row is None:
            raise HTTPException(404)
        response.headers["ETag"] = f'"{row.version}"'
        return _out(row)

    @app.get("/opportunity")
    def list_(stage: str | None = None, limit: int = 50, cursor: str | None = None, user=Depends(current_user)):
        query = sa.select(opportunity).order_by(opportunity.c.amount.desc(), opportunity.c.id).limit(limit + 1)
        if stage:
            query = query.where(opportunity.c.stage == stage)
        if cursor:
            amount, last_id = json.loads(base64.urlsafe_b64decode(cursor))
            query = query.where(sa.or_(opportunity.c.amount < Decimal(amount),
                                       sa.and_(opportunity.c.amount == Decimal(amount), opportunity.c.id > last_id)))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        data = [_out(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = base64.urlsafe_b64encode(json.dumps([str(last.amount), last.id]).encode()).decode()
        return {"data": data, "next_cursor": next_cursor}

    @app.patch("/opportunity/{record_id}")
    def update(record_id: str, body: OpportunityPatch, if_match: str | None = Header(default=None),
               user=Depends(current_user)):
        changes = body.model_dump(exclude_unset=True)
        with engine.begin() as conn:
            row = conn.execute(sa.select(opportunity).where(opportunity.c.id == record_id).with_for_update()).first()
            if row is None:
                raise HTTPException(404)
            if if_match and if_match.strip('"') != str(row.version):
                raise HTTPException(412)
            conn.execute(opportunity.update().where(opportunity.c.id == record_id).values(
                **changes, version=row.version + 1, updated_at=datetime.now(timezone.utc), updated_by=user.id))
            return _out(conn.execute(sa.select(opportunity).where(opportunity.c.id == record_id)).one())

    return app


if __name__ == "__main__":
    if sys.argv[2] == "token":
        print(create_token(sys.argv[1]))
        sys.exit(0)
    uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                log_level=sys.argv[3] if len(sys.argv) > 3 else "info")
