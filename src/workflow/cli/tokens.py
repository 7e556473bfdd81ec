"""`wfm token create|list|revoke`: bearer tokens for the HTTP face. The token is printed once, at
creation; the database keeps only its SHA-256."""

from __future__ import annotations

import json
import sys

from workflow.cli.common import CliError, print_table, with_read_store, with_store


def cmd_create(args, settings, engine) -> int:
    from workflow.rights import RightsError
    from workflow.access.tokens import TokenError, Tokens

    try:
        token = Tokens(engine).create(args.name, args.rights)
    except (TokenError, RightsError) as exc:
        raise CliError(str(exc)) from None
    print(token)
    print(f"token {args.name!r} created with rights {args.rights}: it is shown only now; send it as "
          "'Authorization: Bearer <token>'", file=sys.stderr)
    return 0


def cmd_list(args, settings, engine) -> int:
    from workflow.access.tokens import Tokens

    rows = Tokens(engine).listing()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no tokens: HTTP accepts every request until one is created (`wfm token create NAME --rights ...`)",
              file=sys.stderr)
        return 0
    print_table([("NAME", "RIGHTS", "CREATED", "REVOKED")] +
                [(r["name"], ",".join(r["rights"]), r["created_at"], r["revoked_at"] or "-") for r in rows])
    return 0


def cmd_revoke(args, settings, engine) -> int:
    from workflow.access.tokens import TokenError, Tokens

    try:
        Tokens(engine).revoke(args.name)
    except TokenError as exc:
        raise CliError(str(exc), status=1) from None
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return 0


def add_parsers(sub, common) -> None:
    from workflow.rights import MEANING

    rights = "; ".join(f"{right.value}: {text}" for right, text in MEANING.items())
    p = sub.add_parser("token", help="bearer tokens for the HTTP face")
    tsub = p.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser("create", parents=[common], help="create a token and print it (only this once)")
    p.add_argument("name", help="the client's name, 1-16 characters (it stands where an AE title would: logs, notifications)")
    p.add_argument("--rights", required=True, help=f"comma-separated rights ({rights})")
    p.set_defaults(func=with_store(cmd_create))
    p = tsub.add_parser("list", parents=[common], help="the tokens, with their rights (never the tokens)")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=with_read_store(cmd_list))
    p = tsub.add_parser("revoke", parents=[common], help="revoke a token: requests with it get 401")
    p.add_argument("name", help="the token's name")
    p.set_defaults(func=with_store(cmd_revoke))
