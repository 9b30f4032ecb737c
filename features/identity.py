"""Who is calling: a contact's phone number, email, chat handle or account number, normalised to one spelling.

A contact reaches the contact center with an identifier, not our customer id. The online store maps each
normalised identifier to one customer (see :meth:`features.online_store.OnlineStore.link`), so the same
number typed three ways (``(202) 555-0143``, ``+1 202-555-0143``, ``011 1 202 555 0143`` dialled from the
US) is one key, and an identifier nobody linked resolves to no one rather than to a near match.

Phone numbers go through Google's libphonenumber rules (the ``phonenumbers`` package) to E.164, so national
formats, trunk prefixes and international dialling prefixes come out the same; a number without a country
code is read in ``region`` (``NBA_PHONE_REGION``). Emails are trimmed and lower-cased whole: providers treat
the local part case-insensitively in practice, and a lookup that missed on case would be a cold start for a
known customer. Chat handles are trimmed and lower-cased; account numbers are trimmed and upper-cased.
Nothing is guessed beyond that (no dropping of dots or ``+tags`` in emails): two spellings that could be two
people stay two identifiers.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, get_args

import phonenumbers

IdentifierKind = Literal["phone", "email", "chat", "account"]
KINDS: tuple[str, ...] = get_args(IdentifierKind)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HANDLE = re.compile(r"^[\w.@:+-]{1,128}$")
_ACCOUNT = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")


class IdentifierError(ValueError):
    """An identifier that cannot be normalised; the message names its kind and says why."""


class Identifier(NamedTuple):
    """A normalised identifier: equal identifiers are the same contact point."""

    kind: IdentifierKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def normalize(kind: str, raw: str, *, region: str = "US") -> Identifier:
    """The one spelling of ``raw`` as an identifier of ``kind``; :class:`IdentifierError` when it is not one."""
    text = raw.strip()
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            raise IdentifierError(f"phone: {raw!r} is not a phone number ({exc})") from exc
        if not phonenumbers.is_possible_number(number):
            raise IdentifierError(f"phone: {raw!r} has the wrong number of digits for its country")
        return Identifier("phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if kind == "email":
        if not _EMAIL.match(text):
            raise IdentifierError(f"email: {raw!r} is not an email address")
        return Identifier("email", text.lower())
    if kind == "chat":
        if not _HANDLE.match(text):
            raise IdentifierError(f"chat: {raw!r} is not a chat handle (1-128 letters, digits or . _ @ : + -)")
        return Identifier("chat", text.lower())
    if kind == "account":
        value = text.upper()
        if not _ACCOUNT.match(value):
            raise IdentifierError(f"account: {raw!r} is not an account number (letters, digits and -, up to 64)")
        return Identifier("account", value)
    raise IdentifierError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
