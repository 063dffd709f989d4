// Reads a JSON array of playlist texts on stdin and prints a JSON array with, for each,
// null when hls-parser accepts it in strict mode, else its error message.
"use strict";

const HLS = require("hls-parser");

HLS.setOptions({ strictMode: true, silent: true });

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const verdicts = JSON.parse(input).map((text) => {
    try {
      HLS.parse(text);
      return null;
    } catch (error) {
      return String(error && error.message ? error.message : error);
    }
  });
  process.stdout.write(JSON.stringify(verdicts));
});
