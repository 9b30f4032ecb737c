"""Who is calling: a contact's phone number, email, chat handle or account number, normalised to one spelling.

A contact reaches the contact center with an identifier, not our customer id. The online store maps each
normalised identifier to one customer (see :meth:`features.online_store.OnlineStore.link`), so the same
number typed three ways (``(202) 555-0143``, ``+1 202-555-0143``, ``011 1 202 555 0143`` dialled from the
US) is one key, and an identifier nobody linked resolves to no one rather than to a near match.

Phone numbers go through Google's libphonenumber rules (the ``phonenumbers`` package) to E.164, so national
formats, trunk prefixes and international dialling prefixes come out the same. A number without its country
code is read in ``region`` when the caller knows one (the country a line is dialled from); with no region
it is refused rather than guessed, since ``020 7946 0958`` is a different line in every country.

Emails are trimmed and lower-cased whole: providers treat the local part case-insensitively in practice, and
a lookup that missed on case would be a cold start for a known customer. Chat handles are trimmed and
lower-cased; account numbers are trimmed and upper-cased.
Nothing is guessed beyond that (no dropping of dots or ``+tags`` in emails): two spellings that could be two
people stay two identifiers.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, get_args

import phonenumbers

IdentifierKind = Literal["phone", "email", "chat", "account"]
KINDS: tuple[str, ...] = get_args(IdentifierKind)
LINKED, UNLINKED = "identifier_linked", "identifier_unlinked"
"""The event types that give a customer an identifier and take it back (fields ``kind`` and ``value``)."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HANDLE = re.compile(r"^[\w.@:+-]{1,128}$")
_ACCOUNT = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")


class IdentifierError(ValueError):
    """An identifier that cannot be normalised; the message names its kind and says why, never its value
    (an identifier is personal data, and error messages reach logs)."""


class Identifier(NamedTuple):
    """A normalised identifier: equal identifiers are the same contact point."""

    kind: IdentifierKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def normalize(kind: str, raw: str, *, region: str | None = None) -> Identifier:
    """The one spelling of ``raw`` as an identifier of ``kind``; :class:`IdentifierError` when it is not one."""
    text = raw.strip()
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            hint = " (give it with its country code, +...)" if region is None else ""
            raise IdentifierError(f"phone: not a phone number{hint}") from exc
        if not phonenumbers.is_possible_number(number):
            raise IdentifierError("phone: the wrong number of digits for its country")
        return Identifier("phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if kind == "email":
        if not _EMAIL.match(text):
            raise IdentifierError("email: not an email address")
        return Identifier("email", text.lower())
    if kind == "chat":
        if not _HANDLE.match(text):
            raise IdentifierError("chat: not a chat handle (1-128 letters, digits or . _ @ : + -)")
        return Identifier("chat", text.lower())
    if kind == "account":
        value = text.upper()
        if not _ACCOUNT.match(value):
            raise IdentifierError("account: not an account number (letters, digits and -, up to 64)")
        return Identifier("account", value)
    raise IdentifierError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
