// The page at /ui: ask a collection questions, see the cited pages, manage its PDFs.
//
// Vanilla JS, no framework: the page is one form per task and a few lists, which the DOM
// does well alone; a framework would add a build step or a vendored bundle larger than the
// whole page, and the page must work offline from the Bento (no CDN). Text from the
// service is only ever set with textContent, never as HTML.
//
// Every call sends the key from the key box as "Authorization: Bearer" (none when empty:
// open development mode); the gateway checks it as for any other client.
"use strict";

const KEY_STORAGE = "rag.apiKey";
const MODEL_PREFIX = "rag/";
const SOURCES_TAIL = /\n\n(Sources|Related passages \(they do not answer it\)): [^\n]*$/;

const $ = (id) => document.getElementById(id);

const state = {
  collections: [],
  answerId: null,
  pageUrl: null, // the blob URL of the page image shown
  experimentKey: null, // the key the experiment panel's figures were fetched with
};

// -- key and calls -------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// The message of an error response: the service's {"error": "...", "type"} or /v1's
// OpenAI shape {"error": {"message", "type"}}, shown verbatim.
async function errorMessage(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (typeof body.error === "string") return body.error;
    if (body.error && body.error.message) return body.error.message;
  } catch (_) {
    // not JSON: fall through to the raw text
  }
  return text || `${response.status} ${response.statusText}`;
}

class ApiError extends Error {
  constructor(message, status = null) {
    super(message);
    this.status = status; // the HTTP status, when the service answered
  }
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return response;
}

function say(message) {
  $("status").textContent = message;
}

// -- collections and documents -------------------------------------------------------

async function loadCollections() {
  const response = await fetch("/v1/models", { headers: authHeaders() });
  if (!response.ok) throw new ApiError(await errorMessage(response));
  const ids = (await response.json()).data.map((model) => model.id);
  // Admins also get rag/<collection>@<variant>: each collection once.
  const names = ids
    .filter((id) => id.startsWith(MODEL_PREFIX))
    .map((id) => id.slice(MODEL_PREFIX.length).split("@")[0]);
  state.collections = [...new Set(names)].sort();
  renderCollections();
}

function renderCollections(selected = $("collection").value) {
  const select = $("collection");
  select.replaceChildren(
    ...state.collections.map((name) => new Option(name, name, false, name === selected)),
  );
  $("collection-names").replaceChildren(...state.collections.map((name) => new Option(name)));
  if (!state.collections.length) {
    select.append(new Option("(no collections yet: upload a PDF)", ""));
  }
}

async function loadDocuments() {
  const collection = $("collection").value;
  const rows = $("documents").tBodies[0];
  if (!collection) {
    rows.replaceChildren();
    $("documents-caption").textContent = "No collection chosen";
    $("documents-version").textContent = "";
    return;
  }
  const listing = await (await postJson("/list_documents", { collection })).json();
  rows.replaceChildren(...listing.documents.map(documentRow));
  const count = listing.documents.length;
  $("documents-caption").textContent =
    `${count} document${count === 1 ? "" : "s"} in ${listing.collection}`;
  $("documents-version").textContent = `Index version ${listing.index_version}`;
}

function documentRow(doc) {
  const row = document.createElement("tr");
  row.dataset.documentId = doc.document_id;
  const cells = [
    doc.filename,
    String(doc.pages),
    String(doc.chunks),
    new Date(doc.indexed_at * 1000).toLocaleString(),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete ${doc.filename}`);
  remove.addEventListener("click", () => deleteDocument(doc));
  const cell = document.createElement("td");
  cell.append(remove);
  row.append(cell);
  return row;
}

async function deleteDocument(doc) {
  const sure = window.confirm(
    `Delete ${doc.filename} from collection ${doc.collection}? ` +
      "Its chunks are removed from the index; this cannot be undone.",
  );
  if (!sure) return;
  try {
    await postJson("/delete_document", { document_id: doc.document_id });
    say(`Deleted ${doc.filename}.`);
    await refresh();
  } catch (error) {
    say(`Could not delete ${doc.filename}: ${error.message}`);
  }
}

// The collections and the chosen one's documents, again (data-ready tells when done).
async function refresh() {
  document.body.dataset.ready = "false";
  try {
    await loadCollections();
    await loadDocuments();
  } catch (error) {
    say(error.message);
  } finally {
    await loadExperiment();
    document.body.dataset.ready = "true";
  }
}

// -- upload --------------------------------------------------------------------------

// One request per file, one after another (a long ingest holds a server slot).
async function uploadAll(event) {
  event.preventDefault();
  const collection = $("upload-collection").value.trim();
  const files = [...$("files").files];
  const list = $("uploads");
  list.replaceChildren();
  const items = files.map((file) => uploadItem(file));
  list.append(...items.map((item) => item.row));
  for (const [index, file] of files.entries()) {
    await uploadOne(file, collection, items[index]);
  }
  $("files").value = "";
  await loadCollections().catch((error) => say(error.message));
  if (state.collections.includes(collection)) {
    renderCollections(collection);
  }
  await loadDocuments().catch((error) => say(error.message));
}

function uploadItem(file) {
  const row = document.createElement("li");
  row.dataset.filename = file.name;
  const name = document.createElement("span");
  name.className = "filename";
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Upload of ${file.name}`);
  const outcome = document.createElement("span");
  outcome.className = "outcome";
  outcome.textContent = "waiting";
  row.append(name, bar, outcome);
  return { row, bar, outcome };
}

// XMLHttpRequest rather than fetch: fetch reports no upload progress.
function uploadOne(file, collection, item) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/ingest");
    for (const [name, value] of Object.entries(authHeaders())) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) item.bar.value = (100 * event.loaded) / event.total;
    };
    xhr.upload.onload = () => {
      item.bar.value = 100;
      item.outcome.textContent = "indexing…";
    };
    xhr.onload = async () => {
      item.bar.value = 100;
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        body = { error: xhr.responseText || `${xhr.status} ${xhr.statusText}` };
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        finish(item, "ok", body.status, `${body.status}: ${body.pages} pages, ${body.chunks} chunks`);
      } else {
        const message = typeof body.error === "string" ? body.error : JSON.stringify(body);
        finish(item, "error", "error", message);
      }
      resolve();
    };
    xhr.onerror = () => {
      finish(item, "error", "error", "the upload failed: the service could not be reached");
      resolve();
    };
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("collection", collection);
    item.outcome.textContent = "uploading…";
    xhr.send(form);
  });
}

function finish(item, kind, status, message) {
  item.row.classList.add(kind);
  item.row.dataset.status = status;
  item.outcome.textContent = message;
}

// -- ask: the answer streamed from /v1/chat/completions ------------------------------

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  const collection = $("collection").value;
  if (!question) return;
  if (!collection) {
    say("Choose a collection first (upload a PDF to make one).");
    return;
  }
  const view = resetAnswer();
  $("ask-button").disabled = true;
  const started = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({
        model: MODEL_PREFIX + collection,
        messages: [{ role: "user", content: question }],
        stream: true,
      }),
    });
    if (!response.ok) throw new ApiError(await errorMessage(response));
    let text = "";
    for await (const chunk of serverEvents(response)) {
      if (chunk.error) throw new ApiError(chunk.error.message || JSON.stringify(chunk.error));
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) {
        if (!text) view.dataset.firstTokenMs = (performance.now() - started).toFixed(1);
        text += piece;
        $("answer-text").textContent = text;
      }
      if (chunk.citations) showAnswer(chunk, text);
    }
    view.dataset.totalMs = (performance.now() - started).toFixed(1);
    view.dataset.state = "done";
  } catch (error) {
    $("answer-text").textContent = error.message;
    view.classList.add("failed");
    view.dataset.state = "failed";
  } finally {
    $("answer-text").setAttribute("aria-busy", "false");
    $("ask-button").disabled = false;
  }
}

// The JSON of each "data: {...}" event of an SSE response, up to "data: [DONE]".
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function resetAnswer() {
  const view = $("answer");
  view.hidden = false;
  view.className = "answer";
  for (const key of Object.keys(view.dataset)) delete view.dataset[key];
  view.dataset.state = "streaming";
  $("answer-label").hidden = true;
  $("answer-text").textContent = "";
  $("answer-text").setAttribute("aria-busy", "true");
  $("answer-meta").textContent = "";
  $("citations").replaceChildren();
  $("citations-title").hidden = true;
  $("feedback").hidden = true;
  $("feedback-result").textContent = "";
  $("vote-up").disabled = $("vote-down").disabled = false;
  state.answerId = null;
  return view;
}

// The final chunk: the answer's mode, variant, sources and id (for a vote).
function showAnswer(final, text) {
  const view = $("answer");
  const notFound = final.answer_mode === "not_found";
  // The sources line that ends the streamed text is shown as buttons instead.
  $("answer-text").textContent = text.replace(SOURCES_TAIL, "");
  view.dataset.answerMode = final.answer_mode;
  view.classList.toggle("not-found", notFound);
  $("answer-label").hidden = !notFound;
  $("answer-label").textContent = notFound ? "Not found in the documents" : "";
  const meta = [`Index version ${final.index_version}`];
  if (final.variant && final.variant !== "default") meta.unshift(`Answered by variant ${final.variant}`);
  $("answer-meta").textContent = meta.join(" · ");
  view.dataset.variant = final.variant;
  $("citations-title").hidden = !final.citations.length;
  $("citations-title").textContent = notFound
    ? "Related passages (they do not answer it)"
    : "Sources";
  $("citations").replaceChildren(...final.citations.map(citationButton));
  state.answerId = final.answer_id;
  $("feedback").hidden = !final.answer_id;
}

function pages(citation) {
  return citation.page_start === citation.page_end
    ? `p.${citation.page_start}`
    : `pp.${citation.page_start}-${citation.page_end}`;
}

function citationButton(citation) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "citation";
  button.textContent = `[${citation.n}] ${citation.filename} ${pages(citation)}`;
  // Its visible text is its name ("[1] manual.pdf p.4"); it shows the page beside the answer.
  button.setAttribute("aria-controls", "page");
  button.addEventListener("click", () => showPage(citation, button));
  item.append(button);
  return item;
}

// -- the cited page ------------------------------------------------------------------

async function showPage(citation, button) {
  for (const other of document.querySelectorAll(".citation[aria-pressed]")) {
    other.removeAttribute("aria-pressed");
  }
  button.setAttribute("aria-pressed", "true");
  const figure = $("page");
  const image = $("page-image");
  figure.hidden = false;
  figure.dataset.state = "loading";
  $("page-title").textContent = `[${citation.n}] ${citation.filename}, ${pages(citation)}`;
  $("page-status").textContent = "Loading the page…";
  const mark = document.createElement("mark");
  mark.textContent = citation.text;
  $("page-passage").replaceChildren(mark);
  try {
    const asked = { document_id: citation.document_id, page: citation.page_start, width: 1000 };
    let response;
    try {
      // The passage marked on its page; a passage indexed without its place (an index
      // written by an earlier version) is shown on the page unmarked.
      const marked = citation.chunk_id ? { ...asked, highlight: citation.chunk_id } : asked;
      response = await postJson("/page_image", marked);
    } catch (error) {
      if (!citation.chunk_id || !(error instanceof ApiError) || error.status !== 400) throw error;
      response = await postJson("/page_image", asked);
    }
    const blob = await response.blob();
    if (state.pageUrl) URL.revokeObjectURL(state.pageUrl);
    state.pageUrl = URL.createObjectURL(blob);
    image.alt = `Page ${citation.page_start} of ${citation.filename}`;
    await new Promise((resolve, reject) => {
      image.onload = resolve;
      image.onerror = () => reject(new ApiError("the page image could not be shown"));
      image.src = state.pageUrl;
      image.hidden = false;
    });
    $("page-status").textContent = `Showing ${image.alt}.`;
    figure.dataset.state = "shown";
  } catch (error) {
    image.hidden = true;
    $("page-status").textContent = `Could not show the page: ${error.message}`;
    figure.dataset.state = "failed";
  }
}

// -- feedback ------------------------------------------------------------------------

async function vote(score) {
  if (!state.answerId) return;
  $("vote-up").disabled = $("vote-down").disabled = true;
  try {
    const reply = await (await postJson("/feedback", { answer_id: state.answerId, score })).json();
    $("feedback-result").textContent = reply.recorded
      ? `Thanks: your ${score > 0 ? "thumbs up" : "thumbs down"} is recorded.`
      : "Not recorded.";
    $("feedback").dataset.recorded = String(reply.recorded);
  } catch (error) {
    $("feedback-result").textContent = error.message;
    $("feedback").dataset.recorded = "false";
  }
}

// -- experiment (admins of every collection) -------------------------------------------

// The panel is shown only after rollout_status answers 200 for this key: the service
// decides who is an admin, the page never guesses. A refusal (a reader's 403) empties and
// hides it, another key's figures are never left on it, and a reply meant for a key that
// was changed meanwhile is dropped.
const EXPERIMENT_REFRESH_MS = 10_000;
const SERIES_CLASSES = 6; // .series-0 ... .series-5 in style.css
const SVG_NS = "http://www.w3.org/2000/svg";
const PLOT = { width: 640, height: 170, left: 58, right: 12, top: 10, bottom: 24 };

function hideExperiment() {
  state.experimentKey = null;
  const panel = $("experiment");
  panel.hidden = true;
  panel.dataset.state = "hidden";
  delete panel.dataset.experimentId;
  for (const id of ["experiment-summary", "experiment-analysis", "plot-legend",
    "latency-plot", "votes-plot", "experiment-error", "experiment-facts"]) {
    $(id).replaceChildren();
  }
  $("experiment-variants").tBodies[0].replaceChildren();
}

async function loadExperiment() {
  const key = apiKey();
  if (state.experimentKey !== key) hideExperiment();
  try {
    const status = await (await postJson("/rollout_status", {})).json();
    const timeline = await (
      await postJson("/rollout_timeline", { experiment: status.experiment_id })
    ).json();
    if (apiKey() !== key) return;
    state.experimentKey = key;
    showExperiment(status, timeline);
  } catch (error) {
    if (apiKey() !== key) return;
    const refused = error.status === 401 || error.status === 403;
    if (refused || $("experiment").hidden) {
      hideExperiment(); // not an admin (or the service cannot say yet): nothing to show
    } else {
      // This key's figures, shown already: kept, with why they are not refreshed.
      $("experiment-error").textContent = `Could not refresh: ${error.message}`;
    }
  }
}

function showExperiment(status, timeline) {
  const panel = $("experiment");
  panel.hidden = false;
  panel.dataset.state = "shown";
  panel.dataset.experimentId = status.experiment_id;
  $("experiment-error").textContent = "";
  const since = clock(status.started_at);
  $("experiment-summary").textContent = status.ended_at
    ? `${status.experiment_id}: ran from ${since} to ${clock(status.ended_at)}; ${status.outcome}.`
    : `${status.experiment_id}: running since ${since}.`;
  const names = Object.keys(status.variants);
  const weights = names.map((name) => `${name} ${status.weights[name]}%`).join(" · ");
  const steps = status.steps ? status.steps.map((s) => `${s}%`).join(" → ") : "none";
  $("experiment-facts").replaceChildren(
    ...fact("Incumbent", status.incumbent),
    ...fact("Weights", weights),
    ...fact("Steps", steps),
    ...fact("Candidate", status.candidate || "none"),
  );
  $("experiment-variants").tBodies[0].replaceChildren(
    ...names.map((name) => variantRow(name, status.variants[name])),
  );
  $("experiment-analysis").replaceChildren(...analysisTables(status));
  $("plot-legend").replaceChildren(...names.map(legendItem));
  $("latency-plot").replaceChildren(
    plot(timeline, names, (bin) => bin.p50_ms, "latency-title", formatMs),
  );
  $("votes-plot").replaceChildren(
    plot(timeline, names, (bin) => bin.upvote_share, "votes-title", formatShare, 1),
  );
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

function fact(term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function cells(row, texts) {
  for (const text of texts) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  return row;
}

function variantRow(name, variant) {
  const row = document.createElement("tr");
  row.dataset.variant = name;
  const feedback = variant.feedback;
  const votes = feedback ? `${feedback.n} (mean ${feedback.value.toFixed(2)})` : "none";
  const p50 = variant.p50_ms === null ? "–" : formatMs(variant.p50_ms);
  return cells(row, [name, `${variant.weight}%`, String(variant.requests), p50, votes]);
}

// Per candidate: each metric the guardrails judge, passed or failed, with the test's own
// summary of the figures; before both sides have min_requests outcomes, nothing is judged.
function analysisTables(status) {
  const least = status.guardrails ? status.guardrails.min_requests : null;
  return Object.entries(status.analysis).map(([candidate, analysis]) => {
    const table = document.createElement("table");
    table.dataset.candidate = candidate;
    const caption = document.createElement("caption");
    caption.textContent = analysis.judged
      ? `Analysis of ${candidate} against ${status.incumbent}`
      : `Analysis of ${candidate}: not judged yet (each variant needs ${least} requests)`;
    const head = table.createTHead().insertRow();
    for (const title of ["Metric", "Verdict", "Test and figures"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = title;
      head.append(th);
    }
    const body = table.createTBody();
    for (const [metric, judgement] of Object.entries(analysis.judgements)) {
      const row = body.insertRow();
      row.dataset.metric = metric;
      cells(row, [metric, judgement.worse ? "fail" : "pass", `${judgement.test}: ${judgement.summary}`]);
      row.cells[1].className = judgement.worse ? "verdict-fail" : "verdict-pass";
    }
    table.prepend(caption);
    return table;
  });
}

function legendItem(name, index) {
  const item = document.createElement("li");
  const swatch = svg("svg", { viewBox: "0 0 24 12", "aria-hidden": "true" });
  swatch.append(svg("line", { x1: 0, y1: 6, x2: 24, y2: 6, class: seriesClass(index) }));
  item.append(swatch, name);
  return item;
}

function seriesClass(index) {
  return `series series-${index % SERIES_CLASSES}`;
}

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  return element;
}

// One chart: per variant one <path> through the value of each bin that has one (a bin
// without answers or votes breaks the line, rather than drawing through it) with a dot at
// each, and a dashed vertical line at each change of the rollout. The y axis runs from 0 to ``top`` (default:
// a round number above the largest value).
function plot(timeline, names, value, titleId, format, top = null) {
  const { width, height, left, right, top: upper, bottom } = PLOT;
  const first = timeline.starts[0];
  const last = timeline.starts[timeline.starts.length - 1] + timeline.bin_s;
  const values = names.flatMap((name) => timeline.variants[name].map(value));
  const highest = top ?? roundUp(Math.max(0, ...values.filter((v) => v !== null)));
  const x = (at) => left + ((at - first) / (last - first)) * (width - left - right);
  const y = (v) => height - bottom - (v / highest) * (height - upper - bottom);

  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-labelledby": titleId,
  });
  chart.append(
    svg("rect", { x: left, y: upper, width: width - left - right,
      height: height - upper - bottom, class: "frame" }),
    tick(left - 6, y(0) + 4, format(0), "end"),
    tick(left - 6, y(highest) + 8, format(highest), "end"),
    tick(left, height - 6, clock(first), "start"),
    tick(width - right, height - 6, clock(last), "end"),
  );
  for (const change of timeline.changes) {
    const line = svg("line", { x1: x(change.at), x2: x(change.at), y1: upper,
      y2: height - bottom, class: "change" });
    line.dataset.event = change.event;
    const weights = Object.entries(change.weights).map(([n, w]) => `${n} ${w}%`).join(" / ");
    const title = svg("title");
    title.textContent = `${clock(change.at)} ${change.event} by ${change.by}: ${weights}. ${change.reason}`;
    line.append(title);
    chart.append(line);
  }
  names.forEach((name, index) => {
    let d = "";
    let drawing = false;
    const dots = [];
    timeline.variants[name].forEach((bin, i) => {
      const v = value(bin);
      if (v === null) {
        drawing = false;
        return;
      }
      const [cx, cy] = [x(timeline.starts[i] + timeline.bin_s / 2), y(v)];
      d += `${drawing ? "L" : "M"}${cx.toFixed(1)} ${cy.toFixed(1)}`;
      drawing = true;
      const dot = svg("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3,
        class: `dot ${seriesClass(index)}` });
      const title = svg("title");
      title.textContent = `${name}, ${clock(timeline.starts[i])}: ${format(v)}`;
      dot.append(title);
      dots.push(dot);
    });
    const path = svg("path", { d, class: seriesClass(index) });
    path.dataset.variant = name;
    chart.append(path, ...dots);
  });
  return chart;
}

function tick(x, y, text, anchor) {
  const label = svg("text", { x, y, class: "tick", "text-anchor": anchor });
  label.textContent = text;
  return label;
}

// The smallest of 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing).
function roundUp(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value);
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function formatShare(share) {
  return `${Math.round(share * 100)}%`;
}

function refreshExperimentNow() {
  const open = $("experiment-details").open;
  if (!$("experiment").hidden && open && document.visibilityState === "visible") {
    loadExperiment();
  }
}

// -- start ---------------------------------------------------------------------------

function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  say(key ? "Key set for this tab." : "No key: calls are sent without one.");
  refresh();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").value = "";
  say("Key forgotten.");
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = apiKey();
  $("upload-collection").value = "default";
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("refresh").addEventListener("click", refresh);
  $("collection").addEventListener("change", () => {
    $("upload-collection").value = $("collection").value;
    loadDocuments().catch((error) => say(error.message));
  });
  $("upload-form").addEventListener("submit", uploadAll);
  $("ask-form").addEventListener("submit", ask);
  $("vote-up").addEventListener("click", () => vote(1));
  $("vote-down").addEventListener("click", () => vote(-1));
  $("experiment-details").addEventListener("toggle", refreshExperimentNow);
  setInterval(refreshExperimentNow, EXPERIMENT_REFRESH_MS);
  refresh().then(() => {
    if ($("collection").value) $("upload-collection").value = $("collection").value;
  });
});
