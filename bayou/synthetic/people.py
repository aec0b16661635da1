"""Fictional people, streets and phone numbers. Every name is invented or a common given/family name."""

from __future__ import annotations

import random
from dataclasses import dataclass

MALE_NAMES = (
    "JAMES MICHAEL ROBERT JOHN DAVID WILLIAM RICHARD JOSEPH THOMAS CHRISTOPHER CHARLES DANIEL MATTHEW "
    "ANTHONY MARK STEVEN PAUL ANDREW JOSHUA KEVIN BRIAN GEORGE TIMOTHY JOSE LUIS CARLOS MIGUEL WEI DEVON"
).split()
FEMALE_NAMES = (
    "MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY BETTY SANDRA "
    "ASHLEY EMILY DONNA MICHELLE AMANDA MELISSA MARIA ANA SOFIA MEI PRIYA AISHA GRACE OLIVIA"
).split()
FAMILY_NAMES = (
    "SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ HERNANDEZ LOPEZ GONZALEZ "
    "WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK "
    "RAMIREZ LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT NGUYEN HILL FLORES GREEN ADAMS NELSON "
    "BAKER HALL RIVERA CAMPBELL MITCHELL CARTER ROBERTS O'BRIEN MACKENZIE DUBOIS PATEL CHEN"
).split()
STREET_NAMES = (
    "MAIN OAK PINE MAPLE CEDAR ELM WASHINGTON LAKE HILL PARK SUNSET RIVERSIDE HIGHLAND MEADOW CHESTNUT "
    "WALNUT FRANKLIN JEFFERSON LINCOLN MADISON CHERRY WILLOW SPRING VALLEY FOREST"
).split()
STREET_TYPES = ("ST", "AVE", "RD", "DR", "LN", "BLVD", "CT", "WAY", "PL")


@dataclass(frozen=True)
class Person:
    given: str
    middle: str | None
    family: str
    sex: str  # M, F or X

    @property
    def given_names(self) -> str:
        return f"{self.given} {self.middle}" if self.middle else self.given

    @property
    def display_name(self) -> str:
        """Mixed case "Maria L. Garcia", as printed on a check."""
        middle = f" {self.middle[0]}." if self.middle else ""
        return f"{self.given.title()}{middle} {self.family.title()}"


def random_person(rng: random.Random) -> Person:
    sex = rng.choices(("M", "F", "X"), weights=(49, 49, 2))[0]
    pool = MALE_NAMES if sex == "M" else FEMALE_NAMES if sex == "F" else MALE_NAMES + FEMALE_NAMES
    given = rng.choice(pool)
    middle = rng.choice([n for n in pool if n != given]) if rng.random() < 0.6 else None
    return Person(given, middle, rng.choice(FAMILY_NAMES), sex)


def street_address(rng: random.Random) -> str:
    """Upper case, "1234 MAPLE AVE", sometimes with a unit."""
    number = rng.choice((rng.randint(10, 999), rng.randint(1000, 9999), rng.randint(10000, 29999)))
    street = f"{number} {rng.choice(STREET_NAMES)} {rng.choice(STREET_TYPES)}"
    if rng.random() < 0.15:
        street += f" APT {rng.randint(1, 40)}{rng.choice('ABCD')}"
    return street


def phone_number(rng: random.Random) -> str:
    # 555-0100..0199 is the range reserved for fiction, so no real subscriber is printed
    return f"({rng.randint(201, 989)}) 555-01{rng.randint(0, 99):02d}"
