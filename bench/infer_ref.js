// infer_ref.js — the reference: ONNX Runtime driven from Node (onnxruntime-node)
// on the same .onnx file, threads and batch as bench/infer_bench.c's `model` mode.
//   node bench/infer_ref.js MODEL.onnx THREADS BATCH SECONDS
const path = require('path');
const ort = require(process.env.ORT_NODE_MODULE || 'onnxruntime-node');

async function main() {
  const [model, threads, batch, seconds] = process.argv.slice(2);
  const t = Number(threads), b = Number(batch), secs = Number(seconds);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: t, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const meta = session.inputNames[0];
  // The input size comes from the model's file name convention via the sidecar.
  const side = require(path.resolve(model.replace(/\.onnx$/, '.json')));
  const n = b * 3 * side.input_size * side.input_size;
  const x = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; x[i] = ((s >>> 8) & 0xffff) / 32768 - 1; }
  const feeds = { [meta]: new ort.Tensor('float32', x, [b, 3, side.input_size, side.input_size]) };
  await session.run(feeds); // warm-up
  let images = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0;
  while ((elapsed = Number(process.hrtime.bigint() - t0) / 1e9) < secs) {
    await session.run(feeds);
    images += b;
  }
  console.log(JSON.stringify({ runtime: 'onnxruntime-node', mode: 'model-only', model: side.name,
    threads: t, batch: b, images, seconds: +elapsed.toFixed(3), images_per_s: +(images / elapsed).toFixed(3) }));
}
main().catch((e) => { console.error(e); process.exit(1); });
