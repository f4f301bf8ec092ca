"""The admin's own pages: upload, chapters, moderation, search, recommendations, jobs; each calls its API route's code.

Search shows the index status with the reindex button, the synonyms and the zero-result report.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec
from advanced_alchemy.exceptions import NotFoundError as RepositoryNotFound
from advanced_alchemy.filters import LimitOffset
from litestar.datastructures import UploadFile
from sqladmin import BaseView, expose
from sqladmin.flash import Flash
from sqlalchemy.orm import selectinload
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from audioverse.catalog.indexing import index_status, start_reindex
from audioverse.catalog.ingest import ingest
from audioverse.catalog.models import Audiobook
from audioverse.catalog.schemas import ChapterWrite, SynonymSetsWrite
from audioverse.catalog.services import AudiobookService, SynonymService, ZeroResultService
from audioverse.errors import DomainError, Unprocessable
from audioverse.job_admin import scheduled_jobs
from audioverse.recommendations.services import RecommendationService
from audioverse.reviews.models import Review, ReviewStatus
from audioverse.reviews.schemas import Moderation
from audioverse.reviews.services import ReviewService
from audioverse.web.admin.auth import CSRF_FIELD
from audioverse.web.admin.context import committing_session, is_row_id, resources, signed_in

MODERATION_PAGE_SIZE = 20
ZERO_RESULTS_SHOWN = 50


def _see_other(request: Request, route: str, **query: str) -> Response:
    url = request.url_for(route)
    return RedirectResponse(url.include_query_params(**query) if query else url, status_code=HTTPStatus.SEE_OTHER)


def _problem(exc: Exception) -> str:
    """What to tell the curator when a service refuses: its own words, or the failed field's."""
    return exc.detail if isinstance(exc, DomainError) else str(exc)


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, min(int(raw), 500)) if is_row_id(raw) else 1


class ModerationView(BaseView):
    name = "Moderation queue"
    icon = "fa-solid fa-shield-halved"
    category = "Reviews"

    @expose("/moderation", methods=["GET"], identity="moderation")
    async def queue(self, request: Request) -> Response:
        shown = ReviewStatus.HIDDEN if request.query_params.get("status") == "hidden" else ReviewStatus.VISIBLE
        page = _page_number(request)
        window = LimitOffset(limit=MODERATION_PAGE_SIZE, offset=(page - 1) * MODERATION_PAGE_SIZE)
        async with committing_session(request) as session:
            reviews, total = await ReviewService(session=session).get_many_and_count(
                window,
                Review.status == shown,
                load=[selectinload(Review.author)],
                order_by=[Review.created_at.desc(), Review.id.desc()],
            )
            books = await AudiobookService(session=session).get_many(
                Audiobook.id.in_({review.audiobook_id for review in reviews})
            )
        context = {
            "title": "Moderation queue",
            "reviews": reviews,
            "titles": {book.id: book.title for book in books},
            "total": total,
            "shown": shown.value,
            "page": page,
            "pages": max(1, -(-total // MODERATION_PAGE_SIZE)),
        }
        return await self.templates.TemplateResponse(request, "audioverse/moderation.html", context)

    @expose("/moderation/{review_id}", methods=["POST"], identity="moderate")
    async def moderate(self, request: Request) -> Response:
        if not is_row_id(request.path_params["review_id"]):
            raise HTTPException(status_code=HTTPStatus.NOT_FOUND, detail="No such review.")
        form = await request.form()
        status = ReviewStatus.HIDDEN if form.get("status") == "hidden" else ReviewStatus.VISIBLE
        review_id = int(request.path_params["review_id"])
        try:
            decision = msgspec.convert({"status": status, "reason": str(form.get("reason") or "").strip()}, Moderation)
            async with committing_session(request) as session:
                await ReviewService(session=session).moderate(signed_in(request), review_id, decision)
        except (DomainError, msgspec.ValidationError) as exc:
            Flash.error(request, f"Review {review_id} unchanged: {_problem(exc)}")
        else:
            Flash.success(request, f"Review {review_id} is now {status.value}.")
        back = "hidden" if form.get("from") == "hidden" else "visible"
        return _see_other(request, "admin:view-moderation", status=back)


def _synonym_lines(sets: list[list[str]]) -> str:
    return "\n".join(", ".join(terms) for terms in sets)


def _parse_synonyms(text: str) -> SynonymSetsWrite:
    sets = [[term.strip() for term in line.split(",") if term.strip()] for line in text.splitlines() if line.strip()]
    return msgspec.convert({"sets": sets}, SynonymSetsWrite)


def _as_upload(value: Any) -> Any:
    """A Starlette form value as the upload code takes it: text as is, a file as Litestar's ``UploadFile``."""
    if not isinstance(value, StarletteUpload):
        return value
    upload = UploadFile(content_type=value.content_type or "application/octet-stream", filename=value.filename or "")
    # Already spooled by Starlette (to disk past 1 MiB); the ingest copies it on under its size limit.
    upload.file = value.file  # type: ignore[assignment]
    return upload


def _upload_form(form: FormData) -> dict[str, Any]:
    """The fields the API's upload takes: the CSRF token left out, empty text and unchosen files dropped."""
    fields: dict[str, Any] = {}
    for name in set(form.keys()) - {CSRF_FIELD}:
        values = [
            _as_upload(value)
            for value in form.getlist(name)
            if (value.filename if isinstance(value, StarletteUpload) else value.strip())
        ]
        if values:
            fields[name] = values[0] if len(values) == 1 else values
    return fields


class UploadView(BaseView):
    """A new book from its audio file, read as the API's upload reads it (tags, chapters, cover)."""

    name = "Upload a book"
    icon = "fa-solid fa-upload"
    category = "Catalog"

    @expose("/upload", methods=["GET"], identity="upload")
    async def form(self, request: Request) -> Response:
        context = {"title": "Upload a book", "max_megabytes": resources(request).settings.max_upload_bytes // 2**20}
        return await self.templates.TemplateResponse(request, "audioverse/upload.html", context)

    @expose("/upload", methods=["POST"], identity="upload-send")
    async def send(self, request: Request) -> Response:
        found = resources(request)
        fields = _upload_form(await request.form())
        try:
            async with committing_session(request) as session:
                book = await ingest(
                    AudiobookService(session=session),
                    found.storage,
                    signed_in(request),
                    fields,
                    found.settings.max_upload_bytes,
                    found.settings.max_picture_bytes,
                )
        except DomainError as exc:
            problems = "; ".join(f"{error['field']}: {error['message']}" for error in exc.errors)
            Flash.error(request, f"Not uploaded: {exc.detail}" + (f" ({problems})" if problems else ""))
            return _see_other(request, "admin:view-upload")
        Flash.success(
            request, f"Uploaded “{book.title}” ({book.duration_seconds:.0f} s, {len(book.chapters)} chapters)."
        )
        return RedirectResponse(
            request.url_for("admin:details", identity="audiobook", pk=book.id), status_code=HTTPStatus.SEE_OTHER
        )


CHAPTER_LINE = re.compile(r"^\s*(?P<start>\d{1,6}(?::\d{1,2}){0,2}(?:\.\d{1,3})?)\s+(?P<title>\S.*?)\s*$")


def _seconds(clock: str) -> float:
    """``1:02:03.5``, ``62:03`` or ``3723.5`` in seconds."""
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _clock(seconds: float) -> str:
    whole, fraction = divmod(round(seconds * 1000), 1000)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" + (f".{fraction:03d}" if fraction else "")


def _parse_chapters(text: str, duration: float) -> list[ChapterWrite]:
    """One chapter a line, ``start title``; each ends where the next starts, the last at the book's end."""
    starts: list[tuple[float, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = CHAPTER_LINE.match(line)
        if found is None:
            raise Unprocessable(f"Line {number} is not a start time and a title: {line.strip()[:60]!r}.")
        starts.append((_seconds(found["start"]), found["title"]))
    ends = [start for start, _ in starts[1:]] + [duration]
    return msgspec.convert(
        [
            {"title": title, "start_time_seconds": start, "end_time_seconds": end}
            for (start, title), end in zip(starts, ends, strict=True)
        ],
        list[ChapterWrite],
    )


class ChaptersView(BaseView):
    """A book's chapter list as text, replaced whole through the same service as ``PUT .../chapters/``."""

    name = "Edit chapters"
    icon = "fa-solid fa-list-ol"
    category = "Catalog"

    @expose("/chapters", methods=["GET"], identity="chapters")
    async def form(self, request: Request) -> Response:
        wanted = request.query_params.get("book", "")
        context: dict[str, Any] = {"title": "Edit chapters", "book": None, "wanted": wanted[:40]}
        if wanted:
            if not is_row_id(wanted):
                Flash.error(request, "A book id is a whole number.")
            else:
                try:
                    async with committing_session(request) as session:
                        book = await AudiobookService(session=session).book(int(wanted))
                except RepositoryNotFound:
                    Flash.error(request, f"No audiobook with id {wanted}.")
                else:
                    context["book"] = book
                    context["chapter_text"] = "\n".join(
                        f"{_clock(chapter.start_time_seconds)} {chapter.title}" for chapter in book.chapters
                    )
                    context["length"] = _clock(book.duration_seconds)
        return await self.templates.TemplateResponse(request, "audioverse/chapters.html", context)

    @expose("/chapters/{book_id}", methods=["POST"], identity="chapters-save")
    async def save(self, request: Request) -> Response:
        if not is_row_id(request.path_params["book_id"]):
            raise HTTPException(status_code=HTTPStatus.NOT_FOUND, detail="No such book.")
        book_id = int(request.path_params["book_id"])
        form = await request.form()
        try:
            async with committing_session(request) as session:
                books = AudiobookService(session=session)
                duration = (await books.book(book_id)).duration_seconds
                chapters = _parse_chapters(str(form.get("chapters") or ""), duration)
                saved = await books.replace_chapters(book_id, chapters, signed_in(request))
        except RepositoryNotFound:
            Flash.error(request, f"Chapters not saved: no audiobook with id {book_id}.")
        except (DomainError, msgspec.ValidationError) as exc:
            Flash.error(request, f"Chapters not saved: {_problem(exc)}")
        else:
            Flash.success(request, f"Saved {len(saved)} chapters.")
        return _see_other(request, "admin:view-chapters", book=str(book_id))


class SearchView(BaseView):
    name = "Search"
    icon = "fa-solid fa-magnifying-glass"
    category = "Operations"

    @expose("/search", methods=["GET"], identity="search")
    async def status(self, request: Request) -> Response:
        found = resources(request)
        context: dict[str, Any] = {"title": "Search"}
        async with committing_session(request) as session:
            try:
                context["status"] = await index_status(
                    found.search, found.search_store, session, found.settings.search_index
                )
            except DomainError as exc:
                context["status_error"] = exc.detail
            context["synonyms"] = await SynonymService(session=session).current()
            report = await ZeroResultService(session=session).top(
                LimitOffset(limit=ZERO_RESULTS_SHOWN, offset=0), found.zero_result_tally
            )
        context["synonym_text"] = _synonym_lines(context["synonyms"].sets)
        context["zero_results"] = report.items
        context["zero_results_total"] = report.total
        return await self.templates.TemplateResponse(request, "audioverse/search.html", context)

    @expose("/search/reindex", methods=["POST"], identity="reindex")
    async def reindex(self, request: Request) -> Response:
        try:
            async with committing_session(request) as session:
                job_id = await start_reindex(resources(request).search_store, session)
        except DomainError as exc:
            Flash.error(request, f"Reindex not started: {exc.detail}")
        else:
            Flash.success(request, f"Reindex started (job {job_id}).")
        return _see_other(request, "admin:view-search")

    @expose("/search/synonyms", methods=["POST"], identity="synonyms")
    async def synonyms(self, request: Request) -> Response:
        form = await request.form()
        try:
            wanted = _parse_synonyms(str(form.get("synonyms") or ""))
            async with committing_session(request) as session:
                saved = await SynonymService(session=session).replace(resources(request).search, wanted)
        except (DomainError, msgspec.ValidationError) as exc:
            Flash.error(request, f"Synonyms not saved: {_problem(exc)}")
        else:
            Flash.success(request, f"Synonyms saved: {len(saved.sets)} sets.")
        return _see_other(request, "admin:view-search")


class RecommendationsView(BaseView):
    name = "Recommendations"
    icon = "fa-solid fa-wand-magic-sparkles"
    category = "Operations"

    @expose("/recommendations", methods=["GET"], identity="recommendations")
    async def status(self, request: Request) -> Response:
        async with committing_session(request) as session:
            rebuild = await RecommendationService(session=session).rebuild_status(resources(request).search_store)
        context = {"title": "Recommendations", "rebuild": rebuild}
        return await self.templates.TemplateResponse(request, "audioverse/recommendations.html", context)

    @expose("/recommendations/rebuild", methods=["POST"], identity="rebuild")
    async def rebuild(self, request: Request) -> Response:
        try:
            async with committing_session(request) as session:
                job = await RecommendationService(session=session).start_rebuild(resources(request).search_store)
        except DomainError as exc:
            Flash.error(request, f"Rebuild not started: {exc.detail}")
        else:
            Flash.success(request, f"Rebuild started (job {job.job_id}).")
        return _see_other(request, "admin:view-recommendations")


class JobsView(BaseView):
    name = "Scheduled jobs"
    icon = "fa-solid fa-clock"
    category = "Operations"

    @expose("/jobs", methods=["GET"], identity="jobs")
    async def jobs(self, request: Request) -> Response:
        found = resources(request)
        context = {"title": "Scheduled jobs", "jobs": await scheduled_jobs(found.broker, found.search_store)}
        return await self.templates.TemplateResponse(request, "audioverse/jobs.html", context)


PAGE_VIEWS: list[type[BaseView]] = [
    UploadView,
    ChaptersView,
    ModerationView,
    SearchView,
    RecommendationsView,
    JobsView,
]
