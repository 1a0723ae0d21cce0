// netmon run --html: draws the run's graph (the #netmon-graph data) with cytoscape, and
// publishes what was drawn as window.netmonGraph and in #netmon-drawn.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("netmon-graph").textContent);
  var container = document.getElementById("graph");
  var elements = [];
  data.nodes.forEach(function (n) {
    elements.push({ group: "nodes", data: n, classes: n.kind + (n.failed ? " failed" : "") });
  });
  data.edges.forEach(function (e) {
    elements.push({ group: "edges", data: e, classes: e.status });
  });
  var cy = cytoscape({
    container: container,
    elements: elements,
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: {
        "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
        "color": "#1f2933", "width": 26, "height": 26, "border-width": 2,
        "text-wrap": "ellipsis", "text-max-width": 240 } },
      { selector: "node.process", style: { "shape": "round-rectangle", "background-color": "#3b73b9", "border-color": "#1d4f8c", "width": 34 } },
      { selector: "node.client", style: { "shape": "diamond", "background-color": "#8e6cc0", "border-color": "#5f3f93" } },
      { selector: "node.domain", style: { "shape": "ellipse", "background-color": "#3f9c6b", "border-color": "#23704a" } },
      { selector: "node.endpoint", style: { "shape": "rectangle", "background-color": "#9aa5b1", "border-color": "#616e7c", "width": 20, "height": 20 } },
      { selector: "node.failed", style: { "background-color": "#f8d7da", "border-color": "#c62828", "border-width": 3 } },
      { selector: "edge", style: {
        "width": "mapData(weight, 0, 1, 1, 12)", "line-color": "#7b8794", "target-arrow-color": "#7b8794",
        "target-arrow-shape": "triangle", "arrow-scale": 0.8, "curve-style": "bezier",
        "label": "data(label)", "font-size": 9, "color": "#3e4c59", "text-rotation": "autorotate",
        "text-wrap": "wrap", "text-margin-y": -14, "text-background-color": "#ffffff", "text-background-opacity": 0.85,
        "text-background-padding": 1 } },
      { selector: "edge.failed", style: { "line-color": "#c62828", "target-arrow-color": "#c62828", "line-style": "dashed", "width": 2, "color": "#c62828" } },
      { selector: "edge.partial", style: { "line-color": "#e67e22", "target-arrow-color": "#e67e22" } },
      { selector: "edge.unknown", style: { "line-style": "dotted", "width": 2 } }
    ]
  });
  // Tiers from left to right: clients, processes, domains, addresses; rows in the order the
  // summary lists them, which keeps a domain's addresses next to each other.
  var tierOf = { client: 0, process: 1, domain: 2, endpoint: 3 };
  var used = {};
  data.nodes.forEach(function (n) { used[tierOf[n.kind]] = true; });
  var columns = [0, 1, 2, 3].filter(function (t) { return used[t]; });
  var rows = {};
  var position = {};
  data.nodes.forEach(function (n) {
    var t = tierOf[n.kind];
    rows[t] = (rows[t] || 0) + 1;
    position[n.id] = { column: columns.indexOf(t), row: rows[t] - 1 };
  });
  var tallest = Math.max.apply(null, Object.keys(rows).map(function (t) { return rows[t]; }));
  container.style.height = Math.max(320, Math.min(900, 70 * tallest + 100)) + "px";
  cy.resize();
  cy.layout({
    name: "preset",
    fit: true,
    padding: 40,
    animate: false,
    positions: function (node) {
      var p = position[node.id()];
      var t = tierOf[node.data("kind")];
      var offset = (tallest - rows[t]) * 35;
      return { x: p.column * 280, y: offset + p.row * 70 };
    }
  }).run();
  var drawn = {
    nodes: cy.nodes().map(function (n) {
      return { id: n.id(), kind: n.data("kind"), label: n.data("label"), failed: n.hasClass("failed") };
    }),
    edges: cy.edges().map(function (e) {
      return {
        id: e.id(), source: e.source().id(), target: e.target().id(), status: e.data("status"),
        bytes_sent: e.data("bytes_sent"), bytes_received: e.data("bytes_received"),
        connections: e.data("connections"), failed: e.data("failed"),
        width: parseFloat(e.style("width"))
      };
    })
  };
  window.netmonGraph = drawn;
  document.getElementById("netmon-drawn").textContent = JSON.stringify(drawn);
})();
