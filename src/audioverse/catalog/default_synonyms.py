"""The synonym sets a catalog starts with: numbers and ordinals 1-100 as words, and common abbreviations."""

from __future__ import annotations

UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# The ordinal of a number word whose last word is not regular ("five" -> "fifth", not "fiveth").
IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
ABBREVIATIONS = [["dr", "doctor"], ["st", "saint"], ["mr", "mister"], ["mrs", "missus"], ["&", "and"]]


def number_words(number: int) -> str:
    """``21`` -> ``"twenty-one"``, for 1 to 100."""
    if number == 100:
        return "one hundred"
    if number < 10:
        return UNITS[number]
    if number < 20:
        return TEENS[number - 10]
    tens, units = divmod(number, 10)
    return f"{TENS[tens]}-{UNITS[units]}" if units else TENS[tens]


def ordinal_words(number: int) -> str:
    """``21`` -> ``"twenty-first"``: the last word of the number made ordinal."""
    words = number_words(number)
    head, separator, last = words.rpartition("-" if "-" in words else " ")
    if last in IRREGULAR_ORDINALS:
        last = IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + separator + last


def ordinal_suffix(number: int) -> str:
    """``21`` -> ``"21st"``, ``12`` -> ``"12th"``."""
    suffix = "th" if number % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def default_synonym_sets() -> list[list[str]]:
    """What the catalog's synonyms are until a curator changes them."""
    numbers = [[str(n), number_words(n)] for n in range(1, 101)]
    ordinals = [[ordinal_suffix(n), ordinal_words(n)] for n in range(1, 101)]
    return numbers + ordinals + ABBREVIATIONS
