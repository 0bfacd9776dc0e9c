// Checks a committed tx's inclusion proof in the browser (the tx page).
//
// The tx page embeds the gateway's TxStatus; this script fetches the block's header from the
// gateway and checks that the proof's root is the header's tx root (authchain: `tx_root`,
// BLAKE3; CometBFT: `data_hash`, SHA-256) and that the audit path leads from the tx to it,
// as RFC 9162 §2.1.3.2 verifies an inclusion proof. Nothing but the gateway is contacted.
import { blake3, sha256, bytesToHex, hexToBytes } from "./vendor/noble-hashes.js";

function prefixed(prefix, ...parts) {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = prefix;
  let at = 1;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// Whether `proof` shows `leaf` at `index` of `size` leaves under `root` (RFC 6962 hashing:
// leaves prefixed 0x00, inner nodes 0x01), with hash function `h`.
export function verifyInclusion(leaf, index, size, proof, root, h) {
  if (!(index >= 0 && index < size) || proof.some((p) => p.length !== 32)) return false;
  let fn = index, sn = size - 1;
  let node = h(prefixed(0x00, leaf));
  for (const sibling of proof) {
    if (sn === 0) return false;
    if (fn & 1 || fn === sn) {
      node = h(prefixed(0x01, sibling, node));
      if (!(fn & 1)) {
        while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      }
    } else {
      node = h(prefixed(0x01, node, sibling));
    }
    fn >>= 1; sn >>= 1;
  }
  return sn === 0 && bytesToHex(node) === bytesToHex(root);
}

// The checks, in order; the first that fails is the verdict.
export async function checkTxProof(status, fetchBlock) {
  const block = await fetchBlock(status.height);
  const header = block.header || {};
  const headerRoot = String(header.tx_root ?? header.data_hash ?? "").toLowerCase();
  if (block.hash.toLowerCase() !== status.block_hash.toLowerCase()) {
    return { ok: false, why: `block ${status.height} is ${block.hash}, not ${status.block_hash}` };
  }
  if (headerRoot !== status.tx_root.toLowerCase()) {
    return { ok: false, why: `the header's tx root ${headerRoot} is not the proof's ${status.tx_root}` };
  }
  let leaf, h, name;
  if (status.proof_hash === "sha256") {
    const raw = hexToBytes(status.tx_bytes);
    if (bytesToHex(blake3(raw)) !== status.tx_hash.toLowerCase()) {
      return { ok: false, why: "the proven tx bytes do not hash to this tx's hash" };
    }
    leaf = sha256(raw); h = sha256; name = "SHA-256";
  } else {
    leaf = hexToBytes(status.tx_hash); h = blake3; name = "BLAKE3";
  }
  const proof = status.proof.map(hexToBytes);
  if (!verifyInclusion(leaf, status.index, status.tx_count, proof, hexToBytes(headerRoot), h)) {
    return { ok: false, why: "the audit path does not lead to the header's tx root" };
  }
  return {
    ok: true,
    why: `verified: leaf ${status.index} of ${status.tx_count} under block ${status.height}'s ` +
      `tx root ${headerRoot.slice(0, 16)}… (${name}, ${proof.length} hashes)`,
  };
}

async function run() {
  const out = document.getElementById("proof-result");
  const status = JSON.parse(document.getElementById("tx-proof").textContent);
  out.className = "pending";
  out.textContent = "checking…";
  try {
    const result = await checkTxProof(status, async (height) => {
      const response = await fetch(`/blocks/${height}`);
      if (!response.ok) throw new Error(`GET /blocks/${height}: HTTP ${response.status}`);
      return response.json();
    });
    out.className = result.ok ? "ok" : "bad";
    out.textContent = result.ok ? result.why : `proof check FAILED: ${result.why}`;
  } catch (err) {
    out.className = "bad";
    out.textContent = `proof check FAILED: ${err.message}`;
  }
}

if (typeof document !== "undefined" && document.getElementById("tx-proof")) {
  document.getElementById("check-proof").addEventListener("click", run);
  run();
}
