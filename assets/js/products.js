// The catalogue the page shows; a real app would fetch it from its API.
window.SHOP_PRODUCTS = [
  { name: "Canvas tote", price: "12.00" },
  { name: "Enamel mug", price: "9.50" },
  { name: "Field notebook", price: "6.00" },
];
