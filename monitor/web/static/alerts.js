/* monitor: the rule form shows only the settings of the chosen type. */
(function () {
  "use strict";
  var select = document.getElementById("field-type");
  if (!select) return;
  function show() {
    var type = select.value;
    Array.prototype.forEach.call(document.querySelectorAll(".rule-field"), function (label) {
      var types = (label.getAttribute("data-types") || "").split(" ");
      label.hidden = types.indexOf(type) < 0;
      // A field several types share says what it means for this one.
      Array.prototype.forEach.call(label.querySelectorAll(".hint[data-hint-" + type + "]"), function (hint) {
        hint.textContent = hint.getAttribute("data-hint-" + type);
      });
    });
  }
  select.addEventListener("change", show);
  show();
})();
