// Render the catalogue and show which release served this page (from the asset manifest's
// folder name in the URL, e.g. /static/1.4.2/js/app.js).
(function () {
  var list = document.getElementById("products");
  (window.SHOP_PRODUCTS || []).forEach(function (p) {
    var li = document.createElement("li");
    li.textContent = p.name;
    var price = document.createElement("span");
    price.className = "price";
    price.textContent = "€" + p.price;
    li.appendChild(price);
    list.appendChild(li);
  });
  var script = document.currentScript || document.querySelector('script[src$="app.js"]');
  var match = script && /\/([^/]+)\/js\/app\.js/.exec(script.src);
  if (match) {
    document.getElementById("version").textContent = "version " + match[1];
  }
})();
