// An image with its boxes drawn over it: an <img> and an SVG in the image's own pixel space (viewBox = the
// original width and height), so boxes in original pixels fit a thumbnail or a scaled image alike.
import {h, s, number} from "./dom.js";

const PALETTE = 8;

export function colourIndex(label, labels) {
  const index = labels.indexOf(label);
  return (index >= 0 ? index : [...label].reduce((sum, c) => sum + c.charCodeAt(0), 0)) % PALETTE;
}

// boxes: [{label, x_min, y_min, x_max, y_max, score?}] or [{label, score, box: {...}}]
export function boxedImage({src, alt, width, height, boxes = [], labels = []}) {
  const img = h("img", {src, alt, loading: "lazy", decoding: "async"});
  const wrap = h("div", {class: "boxed"}, img);
  if (!width || !height || !boxes.length) return wrap;
  const svg = s("svg", {viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "overlay",
                        "aria-hidden": "true"});
  // In the image's own units, so lines and captions keep their size on screen whatever the image's pixels.
  const side = Math.max(width, height);
  const stroke = side / 100;
  const font = side / 16;
  for (const item of boxes) {
    const box = item.box || item;
    const colour = colourIndex(item.label, labels);
    const caption = item.score === undefined ? item.label : `${item.label} ${number(item.score, 2)}`;
    svg.append(s("g", {class: `box box-${colour}`, "data-label": item.label},
      s("rect", {x: box.x_min, y: box.y_min, width: Math.max(0, box.x_max - box.x_min),
                 height: Math.max(0, box.y_max - box.y_min), "stroke-width": stroke}),
      s("text", {x: box.x_min + stroke, y: Math.max(font, box.y_min - stroke), "font-size": font, text: caption})));
  }
  wrap.append(svg);
  return wrap;
}
