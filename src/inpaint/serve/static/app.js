/*
 * inpaint serve: the browser page.
 *
 * Plain ES2020 in one IIFE, no build step, no network access beyond the local API:
 *   GET /api/v1/models, POST /api/v1/jobs, GET /api/v1/jobs/{id}[/events|/result], DELETE /api/v1/jobs/{id}.
 *
 * The mask lives in a canvas at the image's natural resolution (#mask-canvas); CSS scales it
 * over the image and shows it half-transparent. Only its alpha channel matters: alpha > 127 = fill.
 * Undo/redo replays a list of operations (strokes, clear, invert, loaded masks) onto that
 * canvas instead of keeping pixel snapshots.
 */
(() => {
  'use strict';

  const API = '/api/v1';
  const MASK_RGB = [255, 40, 110];                     // overlay colour; only alpha is exported
  const MASK_COLOUR = `rgb(${MASK_RGB.join(',')})`;
  const OUTLINE_RGBA = [255, 0, 220, 255];             // hole outline drawn over results
  const TERMINAL = new Set(['done', 'failed', 'cancelled']);
  const POLL_MS = 500;

  const $ = (sel) => document.querySelector(sel);
  const el = {
    status: $('#status'), imageInput: $('#image-input'), imageInfo: $('#image-info'),
    stage: $('#stage'), dropHint: $('#drop-hint'), wrap: $('#canvas-wrap'), img: $('#source-image'),
    canvas: $('#mask-canvas'), cursor: $('#brush-cursor'),
    brush: $('#tool-brush'), eraser: $('#tool-eraser'), size: $('#brush-size'), sizeValue: $('#brush-size-value'),
    undo: $('#undo'), redo: $('#redo'), clear: $('#clear'), invert: $('#invert'),
    maskInput: $('#mask-input'), downloadMask: $('#download-mask'),
    models: $('#models'), seed: $('#seed'), lora: $('#lora'), optionsNone: $('#options-none'),
    run: $('#run'), results: $('#results'), resultsEmpty: $('#results-empty'), outline: $('#outline'),
  };
  // Read back on every export and run: keep the mask in CPU memory (also avoids a console warning).
  const maskCtx = el.canvas.getContext('2d', { willReadFrequently: true });

  const state = {
    ready: false,
    models: [],          // from /api/v1/models
    limits: {},
    image: null,         // {file, url, name, stem, width, height}
    openToken: 0,        // guards against two images decoding at once
    tool: 'brush',
    ops: [],             // mask history (applied, oldest first)
    redo: [],            // undone operations, most recent last
    stroke: null,        // the stroke being drawn
    lastPointer: null,   // last pointer position over the canvas, for the cursor preview
    run: null,           // {jobs: [], urls: []} of the last Run
    submitting: false,
  };

  /* ------------------------------------------------------------------ helpers */

  /** Show one line in the status bar; kind is 'info', 'ok' or 'error'. */
  function setStatus(message, kind = 'info') {
    el.status.textContent = message;
    el.status.className = kind;
  }

  /** Create an element: h('div', {class: 'x', 'data-a': 1}, child, 'text'). */
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  /** The one-line error of an API response ({"error": "…"}), or its HTTP status. */
  async function errorLine(resp) {
    try {
      const body = await resp.json();
      if (body && typeof body.error === 'string' && body.error) return body.error;
    } catch (_) { /* not JSON */ }
    return `HTTP ${resp.status}${resp.statusText ? ' ' + resp.statusText : ''}`;
  }

  /** File name without extension, safe for download names. */
  function stemOf(name) {
    const stem = name.replace(/\.[^./\\]*$/, '').replace(/[\\/:*?"<>|\s]+/g, '_');
    return stem || 'image';
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  /** True when keystrokes should go to a form field rather than to the shortcuts. */
  function isTyping(target) {
    if (!target || !target.tagName) return false;
    if (target.isContentEditable || target.tagName === 'TEXTAREA' || target.tagName === 'SELECT') return true;
    if (target.tagName !== 'INPUT') return false;
    return !['checkbox', 'radio', 'range', 'button', 'submit', 'reset', 'file', 'color'].includes(target.type);
  }

  const fieldId = (option) => option.replace(/_/g, '-');
  const modelByName = (name) => state.models.find((m) => m.name === name);
  const checkedModels = () => [...document.querySelectorAll('input[name=model]:checked')]
    .map((cb) => modelByName(cb.value)).filter(Boolean);

  /* ------------------------------------------------------------------ methods and options */

  async function loadModels() {
    try {
      const resp = await fetch(`${API}/models`, { cache: 'no-store' });
      if (!resp.ok) throw new Error(await errorLine(resp));
      const data = await resp.json();
      state.models = Array.isArray(data.models) ? data.models : [];
      state.limits = data.limits || {};
      renderModels(data.default);
      updateOptions();
      state.ready = true;
      document.body.dataset.ready = 'true';
      if (!state.image) setStatus('Open an image, paint over what to fill, pick methods, then Run.');
    } catch (e) {
      el.models.replaceChildren(h('p', { class: 'hint' }, 'No methods.'));
      setStatus(`Could not load the list of methods: ${e.message}. Reload the page to try again.`, 'error');
    }
  }

  /** One checkbox per method; unavailable ones disabled with their reason. */
  function renderModels(defaultName) {
    const rows = state.models.map((m) => {
      const available = m.available !== false;
      const reason = available ? null : (m.reason || 'not available');
      const box = h('input', {
        type: 'checkbox', name: 'model', value: m.name, disabled: !available,
        onchange: updateOptions,
      });
      box.checked = available && m.name === defaultName;
      return h('label', { class: `model${available ? '' : ' unavailable'}`, title: reason || m.summary || null },
        box,
        h('span', { class: 'model-text' },
          h('span', { class: 'model-name' }, m.name,
            m.heavy ? h('span', { class: 'tag', title: 'large model: slow, especially without a GPU' }, 'heavy') : null),
          m.summary ? h('small', { class: 'model-summary' }, m.summary) : null,
          reason ? h('small', { class: 'model-reason' }, reason) : null));
    });
    el.models.replaceChildren(...(rows.length ? rows : [h('p', { class: 'hint' }, 'The server offers no method.')]));
  }

  /** Show only the options some checked method reads; fill the LoRA list. */
  function updateOptions() {
    const read = new Set();
    const loras = [];
    for (const m of checkedModels()) {
      const opts = m.options || [];
      opts.forEach((o) => read.add(o));
      if (opts.includes('lora')) for (const l of m.loras || []) if (!loras.includes(l)) loras.push(l);
    }
    let shown = 0;
    for (const row of document.querySelectorAll('.option[data-option]')) {
      row.hidden = !read.has(row.dataset.option);
      if (!row.hidden) shown += 1;
    }
    el.optionsNone.hidden = shown > 0 || checkedModels().length === 0;
    const keep = el.lora.value;
    el.lora.replaceChildren(...['none', ...loras].map((l) => h('option', { value: l }, l)));
    el.lora.value = loras.includes(keep) ? keep : 'none';
    const n = checkedModels().length;
    el.run.textContent = n > 1 ? `Run ${n} methods` : 'Run';
  }

  /** The non-empty option values that `model` reads (seed excluded). */
  function optionValues(model) {
    const out = {};
    for (const name of model.options || []) {
      if (name === 'seed') continue;
      const input = document.getElementById(fieldId(name));
      if (!input) continue;
      const value = input.value.trim();
      if (value !== '') out[name] = value;
    }
    return out;
  }

  /** The first invalid visible field as "Label: message", or null. */
  function invalidField() {
    for (const input of document.querySelectorAll('.toolbar .field input, .toolbar .field textarea')) {
      const row = input.closest('.field');
      if (row.hidden || input.type === 'range' || input.checkValidity()) continue;
      const label = row.querySelector('span').textContent.trim();
      return `${label}: ${input.validationMessage || 'invalid value'}`;
    }
    return null;
  }

  /* ------------------------------------------------------------------ image */

  async function openImage(file) {
    if (!file) return;
    const name = file.name || `pasted.${(file.type.split('/')[1] || 'png').replace(/\W.*/, '')}`;
    if (file.type && !file.type.startsWith('image/')) {
      setStatus(`${name} is not an image (${file.type}).`, 'error');
      return;
    }
    const token = ++state.openToken;
    const url = URL.createObjectURL(file);
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
    } catch (_) {
      URL.revokeObjectURL(url);
      if (token === state.openToken) {
        setStatus(`Could not read ${name}: this browser cannot decode it (try PNG, JPEG or WebP).`, 'error');
      }
      return;
    }
    if (token !== state.openToken) { URL.revokeObjectURL(url); return; }

    if (state.image) URL.revokeObjectURL(state.image.url);
    const width = probe.naturalWidth;
    const height = probe.naturalHeight;
    state.image = { file, url, name, stem: stemOf(name), width, height };
    el.img.src = url;
    el.canvas.width = width;     // also clears the mask
    el.canvas.height = height;
    state.ops = [];
    state.redo = [];
    state.stroke = null;

    // Brush size in natural pixels: about 5% of the shorter side.
    const side = Math.min(width, height);
    el.size.max = String(Math.max(512, Math.floor(side / 4)));
    setBrushSize(Math.max(1, Math.round(side * 0.05)));

    el.dropHint.hidden = true;
    el.wrap.hidden = false;
    layoutStage();
    updateHistoryButtons();

    el.imageInfo.textContent = `${name} — ${width} × ${height} px, ${formatBytes(file.size)}`;
    const problem = limitProblem();
    if (problem) setStatus(problem, 'error');
    else setStatus(`Opened ${name}. Paint over the part to fill, then Run.`, 'ok');
  }

  /** A message when the image exceeds the server's limits, else null. */
  function limitProblem() {
    const { max_upload_bytes: maxBytes, max_pixels: maxPixels } = state.limits;
    const img = state.image;
    if (!img) return null;
    if (maxBytes && img.file.size > maxBytes) {
      return `${img.name} is ${formatBytes(img.file.size)}; the server accepts at most ${formatBytes(maxBytes)}.`;
    }
    if (maxPixels && img.width * img.height > maxPixels) {
      return `${img.name} has ${(img.width * img.height / 1e6).toFixed(1)} megapixels; the server accepts at most ${(maxPixels / 1e6).toFixed(1)}.`;
    }
    return null;
  }

  /** Fit the image (and the mask over it) in the stage, scaling up small images up to 4x. */
  function layoutStage() {
    if (!state.image) return;
    const style = getComputedStyle(el.stage);
    const availW = el.stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const availH = el.stage.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    const { width, height } = state.image;
    const scale = Math.max(0.01, Math.min(availW / width, availH / height, 4));
    el.wrap.style.width = `${Math.floor(width * scale)}px`;
    el.wrap.style.height = `${Math.floor(height * scale)}px`;
  }

  /* ------------------------------------------------------------------ mask painting */

  function setTool(tool) {
    state.tool = tool;
    for (const [button, name] of [[el.brush, 'brush'], [el.eraser, 'eraser']]) {
      button.classList.toggle('active', tool === name);
      button.setAttribute('aria-pressed', String(tool === name));
    }
    el.cursor.classList.toggle('eraser', tool === 'eraser');
  }

  const brushSize = () => Number(el.size.value);

  function setBrushSize(size) {
    const clamped = Math.min(Number(el.size.max), Math.max(1, Math.round(size)));
    el.size.value = String(clamped);
    el.sizeValue.textContent = `${clamped} px`;
    if (state.lastPointer) moveCursor(state.lastPointer);
  }

  /** Grow or shrink the brush by about 15% ([ and ] keys). */
  function stepBrushSize(direction) {
    const size = brushSize();
    setBrushSize(size + direction * Math.max(1, Math.round(size * 0.15)));
  }

  /** Client coordinates to natural image pixels. */
  function toNatural(ev) {
    const r = el.canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * el.canvas.width / r.width, (ev.clientY - r.top) * el.canvas.height / r.height];
  }

  /** Prepare ctx for one stroke's paint (brush) or erase (eraser). */
  function strokeStyle(ctx, op) {
    ctx.globalCompositeOperation = op.tool === 'eraser' ? 'destination-out' : 'source-over';
    ctx.fillStyle = ctx.strokeStyle = MASK_COLOUR;
    ctx.lineWidth = op.size;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
  }

  /**
   * Draw the part of a stroke from point `from` on. Point 0 is a round dot, each later point a
   * segment from the previous one: live drawing and replay draw exactly the same shapes.
   */
  function drawStroke(ctx, op, from = 0) {
    const p = op.points;
    ctx.save();
    strokeStyle(ctx, op);
    if (from === 0) {
      ctx.beginPath();
      ctx.arc(p[0][0], p[0][1], op.size / 2, 0, Math.PI * 2);
      ctx.fill();
      from = 1;
    }
    for (let i = from; i < p.length; i++) {
      ctx.beginPath();
      ctx.moveTo(p[i - 1][0], p[i - 1][1]);
      ctx.lineTo(p[i][0], p[i][1]);
      ctx.stroke();
    }
    ctx.restore();
  }

  /** Apply one history operation to the mask context. */
  function drawOp(ctx, op) {
    const { width, height } = ctx.canvas;
    switch (op.type) {
      case 'stroke': drawStroke(ctx, op); break;
      case 'clear': ctx.clearRect(0, 0, width, height); break;
      case 'invert':
        // XOR with an opaque fill turns alpha a into 1 - a.
        ctx.save();
        ctx.globalCompositeOperation = 'xor';
        ctx.fillStyle = MASK_COLOUR;
        ctx.fillRect(0, 0, width, height);
        ctx.restore();
        break;
      case 'load':
        ctx.clearRect(0, 0, width, height);
        ctx.drawImage(op.bitmap, 0, 0);
        break;
      default: break;
    }
  }

  /** Rebuild the mask from the history, starting at the last op that replaces everything. */
  function replay() {
    if (!state.image) return;
    el.canvas.width = state.image.width;   // a fresh, empty bitmap
    let start = 0;
    for (let i = state.ops.length - 1; i >= 0; i--) {
      if (state.ops[i].type === 'clear' || state.ops[i].type === 'load') { start = i; break; }
    }
    for (let i = start; i < state.ops.length; i++) drawOp(maskCtx, state.ops[i]);
  }

  /** Record an operation (already drawn) and forget the redo stack. */
  function pushOp(op) {
    state.ops.push(op);
    state.redo = [];
    updateHistoryButtons();
  }

  function applyOp(op) {
    if (!state.image) { setStatus('Open an image first.', 'error'); return; }
    drawOp(maskCtx, op);
    pushOp(op);
  }

  function undo() {
    if (!state.ops.length || state.stroke) return;
    state.redo.push(state.ops.pop());
    replay();
    updateHistoryButtons();
  }

  function redo() {
    if (!state.redo.length || state.stroke) return;
    const op = state.redo.pop();
    state.ops.push(op);
    drawOp(maskCtx, op);
    updateHistoryButtons();
  }

  function updateHistoryButtons() {
    el.undo.disabled = !state.ops.length;
    el.redo.disabled = !state.redo.length;
  }

  /** Move the round brush preview to a pointer position. */
  function moveCursor(ev) {
    if (!state.image || ev.pointerType === 'touch') { el.cursor.hidden = true; return; }
    const r = el.wrap.getBoundingClientRect();
    const d = brushSize() * r.width / state.image.width;
    el.cursor.style.width = el.cursor.style.height = `${d}px`;
    el.cursor.style.transform = `translate(${ev.clientX - r.left - d / 2}px, ${ev.clientY - r.top - d / 2}px)`;
    el.cursor.hidden = false;
  }

  function onPointerDown(ev) {
    if (!state.image || state.stroke) return;
    if (ev.pointerType === 'mouse' && ev.button !== 0) return;
    ev.preventDefault();
    el.canvas.setPointerCapture(ev.pointerId);
    // A pen's eraser end (button 5 / buttons bit 32) erases whatever the tool.
    const tool = ev.button === 5 || (ev.buttons & 32) ? 'eraser' : state.tool;
    state.stroke = { type: 'stroke', tool, size: brushSize(), points: [toNatural(ev)], pointerId: ev.pointerId };
    drawStroke(maskCtx, state.stroke, 0);
    state.lastPointer = ev;
    moveCursor(ev);
  }

  function onPointerMove(ev) {
    state.lastPointer = ev;
    moveCursor(ev);
    const stroke = state.stroke;
    if (!stroke || ev.pointerId !== stroke.pointerId) return;
    const events = (ev.getCoalescedEvents && ev.getCoalescedEvents()) || [];
    const first = stroke.points.length;
    for (const e of events.length ? events : [ev]) {
      const pt = toNatural(e);
      const last = stroke.points[stroke.points.length - 1];
      if (Math.hypot(pt[0] - last[0], pt[1] - last[1]) >= 0.5) stroke.points.push(pt);
    }
    if (stroke.points.length > first) drawStroke(maskCtx, stroke, first);
  }

  function onPointerUp(ev) {
    const stroke = state.stroke;
    if (!stroke || ev.pointerId !== stroke.pointerId) return;
    state.stroke = null;
    delete stroke.pointerId;
    pushOp(stroke);
  }

  /** Read a mask PNG: any pixel with luminance > 127 (over black) is fill. Sizes must match. */
  async function loadMask(file) {
    if (!file) return;
    if (!state.image) { setStatus('Open an image before loading its mask.', 'error'); return; }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none' });
    } catch (_) {
      setStatus(`Could not read ${file.name} as an image.`, 'error');
      return;
    }
    const { width, height } = state.image;
    if (bitmap.width !== width || bitmap.height !== height) {
      setStatus(`The mask ${file.name} is ${bitmap.width} × ${bitmap.height} px but the image is ${width} × ${height} px: load a mask of the same size.`, 'error');
      bitmap.close();
      return;
    }
    const canvas = h('canvas', { width, height });
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const pixels = ctx.getImageData(0, 0, width, height);
    const d = pixels.data;
    let count = 0;
    for (let j = 0; j < d.length; j += 4) {
      const lum = (0.299 * d[j] + 0.587 * d[j + 1] + 0.114 * d[j + 2]) * d[j + 3] / 255;
      const fill = lum > 127;
      d[j] = MASK_RGB[0]; d[j + 1] = MASK_RGB[1]; d[j + 2] = MASK_RGB[2];
      d[j + 3] = fill ? 255 : 0;
      count += fill;
    }
    ctx.putImageData(pixels, 0, 0);
    applyOp({ type: 'load', bitmap: canvas, name: file.name });
    setStatus(`Loaded the mask ${file.name}: ${(100 * count / (width * height)).toFixed(1)}% of the pixels to fill.`, 'ok');
  }

  /* ------------------------------------------------------------------ mask export */

  /** The mask as one byte per pixel (1 = fill), thresholding the canvas alpha at 127. */
  function maskBinary() {
    const { width, height } = el.canvas;
    const alpha = maskCtx.getImageData(0, 0, width, height).data;
    const fill = new Uint8Array(width * height);
    let count = 0;
    for (let i = 0, j = 3; i < fill.length; i++, j += 4) {
      if (alpha[j] > 127) { fill[i] = 1; count++; }
    }
    return { fill, count, width, height };
  }

  /* A small PNG encoder: canvas.toBlob may wait for an idle period (a second or more in a
   * headless browser) and always writes RGBA; this writes 8-bit gray or RGBA at once. */
  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function pngChunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    let crc = 0xffffffff;
    for (let i = 4; i < 8 + data.length; i++) crc = CRC_TABLE[(crc ^ out[i]) & 255] ^ (crc >>> 8);
    view.setUint32(8 + data.length, (crc ^ 0xffffffff) >>> 0);
    return out;
  }

  /** Encode `pixels` (rows of `channels` = 1 gray or 4 RGBA bytes per pixel) as a PNG blob. */
  async function encodePng(width, height, channels, pixels) {
    if (typeof CompressionStream !== 'function') return canvasPng(width, height, channels, pixels);
    const stride = width * channels;
    const raw = new Uint8Array((stride + 1) * height);       // each row: filter byte 0, then pixels
    for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
    const zlib = new Blob([raw]).stream().pipeThrough(new CompressionStream('deflate'));
    const idat = new Uint8Array(await new Response(zlib).arrayBuffer());
    const header = new Uint8Array(13);
    const view = new DataView(header.buffer);
    view.setUint32(0, width);
    view.setUint32(4, height);
    header[8] = 8;                                           // bit depth
    header[9] = channels === 1 ? 0 : 6;                      // gray or RGBA
    const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    return new Blob([signature, pngChunk('IHDR', header), pngChunk('IDAT', idat), pngChunk('IEND', new Uint8Array(0))],
      { type: 'image/png' });
  }

  /** Fallback for browsers without CompressionStream: let a canvas encode it. */
  function canvasPng(width, height, channels, pixels) {
    const canvas = h('canvas', { width, height });
    const ctx = canvas.getContext('2d');
    const image = ctx.createImageData(width, height);
    for (let i = 0, j = 0; j < image.data.length; i += channels, j += 4) {
      if (channels === 4) image.data.set(pixels.subarray(i, i + 4), j);
      else { image.data.fill(pixels[i], j, j + 3); image.data[j + 3] = 255; }
    }
    ctx.putImageData(image, 0, 0);
    return new Promise((resolve, reject) => canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error('the browser could not encode a PNG'))), 'image/png'));
  }

  /** Strictly binary 8-bit gray PNG: white (255) = fill, black (0) = keep. */
  function maskPng(bin) {
    const gray = new Uint8Array(bin.fill.length);
    for (let i = 0; i < gray.length; i++) gray[i] = bin.fill[i] ? 255 : 0;
    return encodePng(bin.width, bin.height, 1, gray);
  }

  /** Save a blob through a temporary link; the URL is revoked once the download has started. */
  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  async function downloadMask() {
    if (!state.image) { setStatus('Open an image and paint a mask first.', 'error'); return; }
    try {
      const bin = maskBinary();
      saveBlob(await maskPng(bin), `${state.image.stem}_mask.png`);
      setStatus(bin.count ? `Saved ${state.image.stem}_mask.png.` : `Saved ${state.image.stem}_mask.png (empty: all black).`, 'ok');
    } catch (e) {
      setStatus(`Could not save the mask: ${e.message}`, 'error');
    }
  }

  /**
   * A transparent PNG with a band of `t` pixels around the outside of the hole, t growing with the
   * image so that it stays visible when scaled down. Square dilation by two sliding-window passes.
   */
  function outlinePng(bin) {
    const { fill, width: w, height: hgt } = bin;
    const t = Math.max(1, Math.round(Math.min(w, hgt) / 256));
    const near = new Uint8Array(w * hgt);   // some fill pixel within t columns
    for (let y = 0; y < hgt; y++) {
      const o = y * w;
      let count = 0;
      for (let x = 0; x < Math.min(t, w); x++) count += fill[o + x];
      for (let x = 0; x < w; x++) {
        if (x + t < w) count += fill[o + x + t];
        if (x - t - 1 >= 0) count -= fill[o + x - t - 1];
        near[o + x] = count > 0 ? 1 : 0;
      }
    }
    const d = new Uint8Array(w * hgt * 4);
    const counts = new Int32Array(w);          // per column: `near` rows within t rows
    for (let y = 0; y < Math.min(t, hgt); y++) for (let x = 0; x < w; x++) counts[x] += near[y * w + x];
    for (let y = 0; y < hgt; y++) {
      const add = y + t < hgt ? (y + t) * w : -1;
      const sub = y - t - 1 >= 0 ? (y - t - 1) * w : -1;
      for (let x = 0; x < w; x++) {
        if (add >= 0) counts[x] += near[add + x];
        if (sub >= 0) counts[x] -= near[sub + x];
        const i = y * w + x;
        if (counts[x] > 0 && !fill[i]) d.set(OUTLINE_RGBA, i * 4);
      }
    }
    return encodePng(w, hgt, 4, d);
  }

  /* ------------------------------------------------------------------ running jobs */

  async function run() {
    if (state.submitting) return;
    const fail = (message) => setStatus(message, 'error');
    if (!state.ready) return fail('The list of methods has not loaded yet.');
    if (!state.image) return fail('Open an image first: the button, drag and drop, or paste.');
    const models = checkedModels();
    if (!models.length) return fail('Tick at least one method.');
    const invalid = invalidField();
    if (invalid) return fail(invalid);
    const tooBig = limitProblem();
    if (tooBig) return fail(tooBig);
    const bin = maskBinary();
    if (!bin.count) return fail('The mask is empty: paint over the part of the image to fill.');

    // Take everything the jobs need now: the image, seed and options may change while we submit.
    const image = state.image;
    const seed = el.seed.value.trim();
    const planned = models.map((m) => ({ model: m.name, options: optionValues(m) }));
    state.submitting = true;
    el.run.disabled = true;
    setStatus('Preparing the mask…');
    try {
      const maskBlob = await maskPng(bin);
      const outlineBlob = await outlinePng(bin);
      const cancelled = clearResults();
      const runState = { jobs: [], urls: [] };
      state.run = runState;
      const inputUrl = URL.createObjectURL(image.file);
      const outlineUrl = URL.createObjectURL(outlineBlob);
      runState.urls.push(inputUrl, outlineUrl);
      Object.assign(runState, { image, inputUrl, outlineUrl });

      el.results.append(inputCard(runState, bin));
      for (const { model, options } of planned) {
        const job = { run: runState, model, options, seed, id: null, state: 'queued' };
        job.card = jobCard(job);
        runState.jobs.push(job);
        el.results.append(job.card);
      }
      el.resultsEmpty.hidden = true;
      for (const job of runState.jobs) await submit(job, maskBlob);   // in order: the queue keeps it
      const sent = runState.jobs.filter((j) => j.id).length;
      if (sent) {
        setStatus(`Submitted ${sent} job${sent > 1 ? 's' : ''}` +
          (cancelled ? ` (and cancelled ${cancelled} unfinished one${cancelled > 1 ? 's' : ''} of the last run).` : '.'), 'ok');
      }
    } catch (e) {
      fail(`Could not start the run: ${e.message}`);
    } finally {
      state.submitting = false;
      el.run.disabled = false;
    }
  }

  /** POST one job, then follow its progress. */
  async function submit(job, maskBlob) {
    const image = job.run.image;
    const form = new FormData();
    form.append('image', image.file, image.name);      // the original bytes, never re-encoded
    form.append('mask', maskBlob, `${image.stem}_mask.png`);
    form.append('model', job.model);
    if (job.seed !== '') form.append('seed', job.seed);
    for (const [k, v] of Object.entries(job.options)) form.append(k, v);
    let resp;
    try {
      resp = await fetch(`${API}/jobs`, { method: 'POST', body: form });
    } catch (e) {
      update(job, { state: 'failed', error: `could not reach the server (${e.message})` });
      setStatus(`${job.model}: could not reach the server.`, 'error');
      return;
    }
    if (!resp.ok) {
      const line = await errorLine(resp);
      update(job, { state: 'failed', error: line });
      setStatus(`${job.model}: ${line}`, 'error');
      return;
    }
    const data = await resp.json();
    job.id = data.id;
    if (job.closed) {                                    // run replaced meanwhile
      fetch(`${API}/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' }).catch(() => {});
      return;
    }
    job.card.querySelector('.cancel').disabled = false;
    update(job, data);
    if (!TERMINAL.has(job.state)) follow(job);
  }

  /** Progress through the event stream, falling back to polling if it errors. */
  function follow(job) {
    if (typeof EventSource !== 'function') { poll(job); return; }
    const es = new EventSource(`${API}/jobs/${encodeURIComponent(job.id)}/events`);
    job.es = es;
    es.onmessage = (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch (_) { return; }
      update(job, data);
    };
    es.onerror = () => {
      // Also fires when the server closes the stream; poll unless the job is over.
      stopFollowing(job);
      if (!job.closed && !TERMINAL.has(job.state)) poll(job);
    };
  }

  async function poll(job) {
    if (job.closed || TERMINAL.has(job.state)) return;
    try {
      const resp = await fetch(`${API}/jobs/${encodeURIComponent(job.id)}`, { cache: 'no-store' });
      if (!resp.ok) { update(job, { state: 'failed', error: await errorLine(resp) }); return; }
      update(job, await resp.json());
      job.failures = 0;
    } catch (_) {
      job.failures = (job.failures || 0) + 1;
      if (job.failures >= 20) { update(job, { state: 'failed', error: 'lost contact with the server' }); return; }
    }
    if (!job.closed && !TERMINAL.has(job.state)) job.timer = setTimeout(() => poll(job), POLL_MS);
  }

  function stopFollowing(job) {
    if (job.es) { job.es.close(); job.es = null; }
    if (job.timer) { clearTimeout(job.timer); job.timer = null; }
  }

  /** Apply a job snapshot from the server (or a local failure) to the job and its card. */
  function update(job, data) {
    if (job.closed || TERMINAL.has(job.state)) return;
    for (const k of ['state', 'position', 'step', 'total', 'error', 'seconds']) if (k in data) job[k] = data[k];
    const card = job.card;
    card.dataset.state = job.state;
    const bar = card.querySelector('progress');
    const text = card.querySelector('.progress-text');
    bar.max = 1;
    bar.value = 0;
    switch (job.state) {
      case 'queued':
        if (typeof job.position !== 'number') text.textContent = 'queued';
        else text.textContent = job.position > 0 ? `waiting: ${job.position} ahead` : 'waiting: next in line';
        break;
      case 'running':
        if (job.total) { bar.max = job.total; bar.value = job.step || 0; text.textContent = `step ${job.step || 0}/${job.total}`; }
        else { bar.removeAttribute('value'); text.textContent = job.step ? `running: step ${job.step}` : 'running…'; }
        break;
      case 'done':
        bar.value = 1;
        text.textContent = typeof job.seconds === 'number' ? `done in ${job.seconds.toFixed(1)} s` : 'done';
        break;
      case 'failed': text.textContent = job.error || 'failed'; break;
      case 'cancelled': text.textContent = 'cancelled'; break;
      default: text.textContent = String(job.state);
    }
    if (TERMINAL.has(job.state)) {
      stopFollowing(job);
      const cancel = card.querySelector('.cancel');
      if (cancel) cancel.remove();
      if (job.state === 'done') fetchResult(job);
    }
  }

  async function cancel(job, button) {
    if (!job.id || TERMINAL.has(job.state)) return;
    button.disabled = true;
    button.textContent = 'Cancelling…';
    try {
      const resp = await fetch(`${API}/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' });
      if (!resp.ok) throw new Error(await errorLine(resp));
      const data = await resp.json().catch(() => null);
      if (data && data.state) update(job, data);
    } catch (e) {
      setStatus(`${job.model}: could not cancel (${e.message}).`, 'error');
      button.disabled = false;
      button.textContent = 'Cancel';
    }
  }

  async function fetchResult(job) {
    const view = job.card.querySelector('.view');
    view.replaceChildren(h('p', { class: 'hint' }, 'Loading the result…'));
    try {
      const resp = await fetch(`${API}/jobs/${encodeURIComponent(job.id)}/result`);
      if (!resp.ok) throw new Error(await errorLine(resp));
      const blob = await resp.blob();
      if (job.closed) return;                        // the run was replaced meanwhile
      const url = URL.createObjectURL(blob);
      job.run.urls.push(url);
      showResult(job, url);
    } catch (e) {
      if (job.closed) return;
      view.replaceChildren(h('p', { class: 'card-error' }, `The result could not be loaded: ${e.message}`));
    }
  }

  /* ------------------------------------------------------------------ result cards */

  /** Stacked input and result with a before/after slider (.compare) and the hole outline. */
  function compareView(runState, resultUrl, label) {
    const { width, height } = runState.image;
    const after = h('img', { class: 'after result-image', src: resultUrl, alt: `${label} result` });
    const divider = h('div', { class: 'divider' });
    const stack = h('div', {
      class: 'stack', style: `aspect-ratio: ${width} / ${height}`, title: 'hold to see the input',
    },
    h('img', { class: 'before', src: runState.inputUrl, alt: 'input' }),
    after, divider,
    h('img', { class: 'outline-overlay', src: runState.outlineUrl, alt: '' }));
    // Slider at v%: the input shows left of v, the result right of it.
    const slider = h('input', {
      type: 'range', class: 'compare', min: 0, max: 100, value: 0, 'aria-label': `compare ${label} with the input`,
      oninput: () => {
        after.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
        divider.style.left = `${slider.value}%`;
        divider.hidden = Number(slider.value) === 0;
      },
    });
    divider.hidden = true;
    // Hold to toggle: press on the picture to see the input at the same spot.
    const show = (on) => stack.classList.toggle('holding', on);
    stack.addEventListener('pointerdown', (ev) => { ev.preventDefault(); show(true); });
    for (const type of ['pointerup', 'pointerleave', 'pointercancel']) stack.addEventListener(type, () => show(false));
    return [stack, h('label', { class: 'compare-row' }, h('span', {}, 'input'), slider, h('span', {}, 'result'))];
  }

  function inputCard(runState, bin) {
    const { name, width, height } = runState.image;
    const share = (100 * bin.count / bin.fill.length).toFixed(1);
    return h('div', { class: 'result input-card', 'data-model': 'input', 'data-state': 'done' },
      h('div', { class: 'card-head' }, h('h3', {}, 'input'), h('span', { class: 'card-meta' }, `${width} × ${height}`)),
      h('p', { class: 'progress-text' }, `${name}: ${share}% to fill`),
      h('div', { class: 'view' },
        h('div', { class: 'stack', style: `aspect-ratio: ${width} / ${height}` },
          h('img', { class: 'before', src: runState.inputUrl, alt: 'input' }),
          h('img', { class: 'outline-overlay', src: runState.outlineUrl, alt: '' }))));
  }

  function jobCard(job) {
    const cancelButton = h('button', { type: 'button', class: 'cancel', disabled: true }, 'Cancel');
    cancelButton.addEventListener('click', () => cancel(job, cancelButton));
    const options = Object.entries(job.options).map(([k, v]) => `${k}=${v}`).join(', ');
    return h('div', { class: 'result', 'data-model': job.model, 'data-state': 'queued' },
      h('div', { class: 'card-head' },
        h('h3', {}, job.model),
        h('span', { class: 'card-meta', title: options || null }, job.seed !== '' ? `seed ${job.seed}` : '')),
      h('div', { class: 'progress' },
        h('progress', { max: 1, value: 0 }),
        h('span', { class: 'progress-text' }, 'submitting…'),
        cancelButton),
      h('div', { class: 'view' }));
  }

  function showResult(job, url) {
    const { stem } = job.run.image;
    const view = job.card.querySelector('.view');
    view.replaceChildren(...compareView(job.run, url, job.model),
      h('div', { class: 'card-actions' },
        h('a', { class: 'download-result button', download: `${stem}_${job.model}.png`, href: url }, 'Download PNG'),
        h('a', { class: 'open-result', href: url, target: '_blank', rel: 'noopener' }, 'full size')));
  }

  /** Drop the last run: stop following, cancel unfinished jobs, revoke its blob URLs. */
  function clearResults() {
    const runState = state.run;
    let cancelled = 0;
    if (runState) {
      for (const job of runState.jobs) {
        job.closed = true;
        stopFollowing(job);
        if (job.id && !TERMINAL.has(job.state)) {
          cancelled += 1;
          fetch(`${API}/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' }).catch(() => {});
        }
      }
      for (const url of runState.urls) URL.revokeObjectURL(url);
    }
    state.run = null;
    el.results.replaceChildren();
    return cancelled;
  }

  /* ------------------------------------------------------------------ wiring */

  function hasFiles(ev) {
    return ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
  }

  function wire() {
    el.imageInput.addEventListener('change', () => { openImage(el.imageInput.files[0]); el.imageInput.value = ''; });
    el.maskInput.addEventListener('change', () => { loadMask(el.maskInput.files[0]); el.maskInput.value = ''; });

    el.brush.addEventListener('click', () => setTool('brush'));
    el.eraser.addEventListener('click', () => setTool('eraser'));
    el.size.addEventListener('input', () => setBrushSize(brushSize()));
    el.undo.addEventListener('click', undo);
    el.redo.addEventListener('click', redo);
    el.clear.addEventListener('click', () => applyOp({ type: 'clear' }));
    el.invert.addEventListener('click', () => applyOp({ type: 'invert' }));
    el.downloadMask.addEventListener('click', downloadMask);
    el.run.addEventListener('click', run);
    el.outline.addEventListener('change', () => document.body.classList.toggle('show-outline', el.outline.checked));

    el.canvas.addEventListener('pointerdown', onPointerDown);
    el.canvas.addEventListener('pointermove', onPointerMove);
    el.canvas.addEventListener('pointerup', onPointerUp);
    el.canvas.addEventListener('pointercancel', onPointerUp);
    el.canvas.addEventListener('lostpointercapture', onPointerUp);
    el.canvas.addEventListener('pointerleave', () => { if (!state.stroke) { el.cursor.hidden = true; state.lastPointer = null; } });
    el.canvas.addEventListener('contextmenu', (ev) => ev.preventDefault());

    new ResizeObserver(layoutStage).observe(el.stage);

    // Drag and drop anywhere on the page (file inputs keep their own behaviour).
    let depth = 0;
    document.addEventListener('dragenter', (ev) => {
      if (hasFiles(ev)) { depth += 1; document.body.classList.add('dragging'); }
    });
    document.addEventListener('dragleave', (ev) => {
      if (hasFiles(ev) && --depth <= 0) { depth = 0; document.body.classList.remove('dragging'); }
    });
    document.addEventListener('dragover', (ev) => {
      if (hasFiles(ev)) { ev.preventDefault(); ev.dataTransfer.dropEffect = 'copy'; }
    });
    document.addEventListener('drop', (ev) => {
      depth = 0;
      document.body.classList.remove('dragging');
      if (!hasFiles(ev) || (ev.target.tagName === 'INPUT' && ev.target.type === 'file')) return;
      ev.preventDefault();
      const files = [...ev.dataTransfer.files];
      openImage(files.find((f) => f.type.startsWith('image/')) || files[0]);
    });

    // Paste an image from the clipboard; text pastes go on as usual.
    document.addEventListener('paste', (ev) => {
      const items = ev.clipboardData ? [...ev.clipboardData.items] : [];
      const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (!item) return;
      ev.preventDefault();
      openImage(item.getAsFile());
    });

    document.addEventListener('keydown', (ev) => {
      const mod = ev.ctrlKey || ev.metaKey;
      if (mod && ev.key === 'Enter') { ev.preventDefault(); run(); return; }
      if (isTyping(ev.target) || ev.altKey) return;
      const key = ev.key.toLowerCase();
      if (mod) {
        if (key === 'z' && !ev.shiftKey) { ev.preventDefault(); undo(); }
        else if ((key === 'z' && ev.shiftKey) || key === 'y') { ev.preventDefault(); redo(); }
        return;
      }
      if (key === '[') stepBrushSize(-1);
      else if (key === ']') stepBrushSize(1);
      else if (key === 'b') setTool('brush');
      else if (key === 'e') setTool('eraser');
      else return;
      ev.preventDefault();
    });
  }

  // A small read-only hook for automated tests: the mask exactly as it would be uploaded.
  window.inpaintPage = {
    maskPng: () => (state.image ? maskPng(maskBinary()) : Promise.resolve(null)),
    maskFillCount: () => (state.image ? maskBinary().count : 0),
    historyLength: () => state.ops.length,
  };

  wire();
  setBrushSize(brushSize());
  loadModels();
})();
