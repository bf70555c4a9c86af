// Draw every chart of the page: <div class="chart" data-spec="ID"> with its Vega-Lite spec in the
// <script type="application/json" id="ID"> beside it. Vega is served by the dashboard itself.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".chart[data-spec]")) {
    const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
    vegaEmbed(el, spec, { actions: false, renderer: "svg" })
      .then(() => { el.dataset.rendered = "true"; })
      .catch((error) => { el.dataset.rendered = "failed"; el.textContent = "chart failed: " + error; console.error(error); });
  }
});
