// Validates a speedscope file against the schema shipped in speedscope's own npm package:
//   node validate-speedscope.mjs FILE.speedscope.json
// Exit 0 and "valid" when it conforms; exit 1 with the schema errors otherwise.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Ajv from 'ajv';

const require = createRequire(import.meta.url);
const schema = JSON.parse(
  readFileSync(require.resolve('speedscope/dist/release/file-format-schema.json'), 'utf8'),
);
const file = process.argv[2];
if (!file) {
  console.error('usage: node validate-speedscope.mjs FILE');
  process.exit(2);
}
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(schema);
const data = JSON.parse(readFileSync(file, 'utf8'));
if (validate(data)) {
  console.log('valid');
} else {
  console.error(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
