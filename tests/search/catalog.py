"""A fixture catalog of public-domain audiobooks, and the Python reference the engines are checked against."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from search import AudiobookDocument, GenreRef, PersonDocument, PersonRef, SearchFilters
from search.query import SortField, duration_bucket

AUTHORS = {
    1: "Jane Austen",
    2: "Herman Melville",
    3: "Arthur Conan Doyle",
    4: "Mary Shelley",
    5: "Charles Dickens",
    6: "Robert Louis Stevenson",
    7: "Jules Verne",
    8: "Leo Tolstoy",
    9: "Mark Twain",
    10: "Bram Stoker",
    11: "Lewis Carroll",
    12: "Oscar Wilde",
    13: "Franz Kafka",
    14: "George Meredith",
    15: "Maria Edgeworth",
}
NARRATORS = {
    101: "Elizabeth Klett",
    102: "Mark Nelson",
    103: "David Clarke",
    104: "Karen Savage",
    105: "Bob Neufeld",
    106: "Ruth Golding",
}
GENRES = {
    "classic": GenreRef(id=1, name="Classics", slug="classic"),
    "mystery": GenreRef(id=2, name="Mystery", slug="mystery"),
    "horror": GenreRef(id=3, name="Horror", slug="horror"),
    "adventure": GenreRef(id=4, name="Adventure", slug="adventure"),
    "romance": GenreRef(id=5, name="Romance", slug="romance"),
    "science-fiction": GenreRef(id=6, name="Science fiction", slug="science-fiction"),
    "children": GenreRef(id=7, name="Children", slug="children"),
}
# Spread over every duration bucket, boundaries included (exactly 1h falls in "1-3h").
DURATIONS = [1800.0, 3600.0, 7200.0, 10800.0, 16000.0, 25200.0, 36000.0, 50400.0, 72000.0, 90000.0, 5400.0]

# title, author ids, genre slugs, language, series
BOOKS: list[tuple[str, list[int], list[str], str, str | None]] = [
    ("Pride and Prejudice", [1], ["romance", "classic"], "en", None),
    ("Sense and Sensibility", [1], ["romance", "classic"], "en", None),
    ("Emma", [1], ["romance"], "en", None),
    ("Persuasion", [1], ["romance"], "en", None),
    ("Moby Dick", [2], ["adventure", "classic"], "en", None),
    ("Bartleby, the Scrivener", [2], ["classic"], "en", None),
    ("The Adventures of Sherlock Holmes", [3], ["mystery"], "en", "Sherlock Holmes"),
    ("The Hound of the Baskervilles", [3], ["mystery"], "en", "Sherlock Holmes"),
    ("A Study in Scarlet", [3], ["mystery"], "en", "Sherlock Holmes"),
    ("The Sign of the Four", [3], ["mystery"], "en", "Sherlock Holmes"),
    ("Frankenstein", [4], ["horror", "science-fiction", "classic"], "en", None),
    ("The Last Man", [4], ["science-fiction"], "en", None),
    ("Great Expectations", [5], ["classic"], "en", None),
    ("A Tale of Two Cities", [5], ["classic"], "en", None),
    ("Oliver Twist", [5], ["classic"], "en", None),
    ("Bleak House", [5], ["classic"], "en", None),
    ("A Christmas Carol", [5], ["classic", "children"], "en", None),
    ("Treasure Island", [6], ["adventure", "children"], "en", None),
    ("Strange Case of Dr Jekyll and Mr Hyde", [6], ["horror"], "en", None),
    ("Kidnapped", [6], ["adventure"], "en", None),
    ("Vingt mille lieues sous les mers", [7], ["science-fiction", "adventure"], "fr", "Voyages extraordinaires"),
    ("Le Tour du monde en quatre-vingts jours", [7], ["adventure"], "fr", "Voyages extraordinaires"),
    ("Voyage au centre de la Terre", [7], ["science-fiction"], "fr", "Voyages extraordinaires"),
    ("De la Terre à la Lune", [7], ["science-fiction"], "fr", "Voyages extraordinaires"),
    ("War and Peace", [8], ["classic"], "en", None),
    ("Anna Karenina", [8], ["classic", "romance"], "en", None),
    ("The Death of Ivan Ilyich", [8], ["classic"], "en", None),
    ("Adventures of Huckleberry Finn", [9], ["adventure", "classic"], "en", None),
    ("The Adventures of Tom Sawyer", [9], ["adventure", "children"], "en", None),
    ("A Connecticut Yankee in King Arthur's Court", [9], ["adventure"], "en", None),
    ("Dracula", [10], ["horror", "classic"], "en", None),
    ("The Jewel of Seven Stars", [10], ["horror"], "en", None),
    ("Alice's Adventures in Wonderland", [11], ["children"], "en", None),
    ("Through the Looking-Glass", [11], ["children"], "en", None),
    ("The Picture of Dorian Gray", [12], ["horror", "classic"], "en", None),
    ("The Importance of Being Earnest", [12], ["classic"], "en", None),
    ("Die Verwandlung", [13], ["classic"], "de", None),
    ("Der Process", [13], ["classic"], "de", None),
    ("The Adventures of Harry Richmond", [14], ["adventure"], "en", None),
    ("Harrington", [15, 1], ["romance"], "en", None),
]


def _book(
    position: int, title: str, author_ids: list[int], genres: list[str], language: str, series: str | None
) -> AudiobookDocument:
    book_id = position + 1
    narrator_ids = sorted(NARRATORS)
    first_narrator = narrator_ids[position % len(narrator_ids)]
    narrators = [first_narrator] if position % 5 else [first_narrator, narrator_ids[(position + 1) % len(narrator_ids)]]
    authors = ", ".join(AUTHORS[author_id] for author_id in author_ids)
    return AudiobookDocument(
        id=book_id,
        title=title,
        subtitle="An unabridged reading" if position % 3 == 0 else "",
        description=(
            f"{title} by {authors}, read for AudioVerse. A public-domain classic of {' & '.join(genres)} "
            f"first published long ago; this recording keeps every chapter of the original text "
            f"and adds nothing but the narrator's voice, chapter markers and a short introduction."
        ),
        series=series,
        series_position=float(position % 4 + 1) if series else None,
        authors=[PersonRef(id=author_id, name=AUTHORS[author_id]) for author_id in author_ids],
        narrators=[PersonRef(id=narrator_id, name=NARRATORS[narrator_id]) for narrator_id in narrators],
        genres=[GENRES[slug] for slug in genres],
        language=language,
        duration_seconds=DURATIONS[position % len(DURATIONS)],
        # Every seventh book has no release date: it must sort last both ways and never match a date bound.
        release_date=None if position % 7 == 3 else date(1800, 1, 1) + timedelta(days=1357 * position),
        average_rating=round(2.0 + (position * 7 % 31) / 10, 1),
        total_ratings=position * 3,
        # 919 and 1000 are coprime: forty distinct counts, so popularity orders books unambiguously.
        play_count=position * 919 % 1000,
        created_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=17 * position),
        cover_url=None,
    )


CATALOG: list[AudiobookDocument] = [_book(position, *row) for position, row in enumerate(BOOKS)]
BY_ID = {book.id: book for book in CATALOG}
BY_TITLE = {book.title: book for book in CATALOG}


def people_of(books: list[AudiobookDocument]) -> list[PersonDocument]:
    """The authors and narrators of ``books`` with how many of those books each has."""
    authors = Counter(person for book in books for person in book.authors)
    narrators = Counter(person for book in books for person in book.narrators)
    return [
        *(PersonDocument(id=p.id, name=p.name, kind="author", audiobooks_count=n) for p, n in authors.items()),
        *(PersonDocument(id=p.id, name=p.name, kind="narrator", audiobooks_count=n) for p, n in narrators.items()),
    ]


PEOPLE = people_of(CATALOG)


def matches(book: AudiobookDocument, filters: SearchFilters) -> bool:
    """The reference meaning of every filter, written the plain Python way."""
    checks: list[Callable[[], bool]] = []
    if filters.genre is not None:
        checks.append(lambda: filters.genre in {genre.slug for genre in book.genres})
    if filters.author_id is not None:
        checks.append(lambda: filters.author_id in {author.id for author in book.authors})
    if filters.narrator_id is not None:
        checks.append(lambda: filters.narrator_id in {narrator.id for narrator in book.narrators})
    if filters.language is not None:
        checks.append(lambda: book.language == filters.language)
    if filters.duration_min is not None:
        checks.append(lambda: book.duration_seconds >= filters.duration_min)  # type: ignore[operator]
    if filters.duration_max is not None:
        checks.append(lambda: book.duration_seconds <= filters.duration_max)  # type: ignore[operator]
    if filters.released_after is not None:
        checks.append(lambda: book.release_date is not None and book.release_date >= filters.released_after)  # type: ignore[operator]
    if filters.released_before is not None:
        checks.append(lambda: book.release_date is not None and book.release_date <= filters.released_before)  # type: ignore[operator]
    if filters.min_rating is not None:
        checks.append(lambda: book.average_rating >= filters.min_rating)  # type: ignore[operator]
    return all(check() for check in checks)


def facet_counts(books: list[AudiobookDocument]) -> dict[str, dict[str, int]]:
    """What each facet must report over ``books``, counted the way a database would."""
    return {
        "genres": dict(Counter(genre.slug for book in books for genre in book.genres)),
        "languages": dict(Counter(book.language for book in books)),
        "authors": dict(Counter(str(author.id) for book in books for author in book.authors)),
        "narrators": dict(Counter(str(narrator.id) for book in books for narrator in book.narrators)),
        "duration": dict(Counter(duration_bucket(book.duration_seconds) for book in books)),
    }


def sort_value(book: AudiobookDocument, field: SortField) -> object:
    if field == "title":
        return book.title.casefold()
    if field == "release_date":
        return book.release_date
    return getattr(book, field)


def sorted_values(books: list[AudiobookDocument], field: SortField, *, descending: bool) -> list[object]:
    """The expected order of sort values; books without a value come last either way."""
    present = [sort_value(book, field) for book in books if sort_value(book, field) is not None]
    missing = [None for book in books if sort_value(book, field) is None]
    return [*sorted(present, reverse=descending), *missing]  # type: ignore[type-var]
