/** Template rendering: each {{key}} through the target's escaper, {{!key}} as the caller quoted it, nothing missing. */
import { describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/core/quote.js';
import { loadTemplate, render } from '../../src/system/templates.js';

describe('render', () => {
  it('escapes every {{key}}, takes {{!key}} as given, and leaves the rest of the text alone', () => {
    const out = render('a={{a}} b={{b}} cmd={{!cmd}} {{ not a key }}', { a: "it's", b: '$(id)' }, (v) => `<${v}>`, { cmd: "'x' 'y z'" });
    expect(out).toBe(`a=<it's> b=<$(id)> cmd='x' 'y z' {{ not a key }}`);
    expect(render('{{b}}', { b: '$(id)' }, shellQuote)).toBe(shellQuote('$(id)'));
  });

  it('a value is escaped once, wherever and however often it stands', () => {
    expect(render('{{v}}{{v}}', { v: 'a b' }, (v) => `<${v}>`)).toBe('<a b><a b>');
  });

  it.each([
    ['{{missing}}', {}, {}, "template value 'missing' missing"],
    ['{{!cmd}}', { cmd: 'a plain value is not a quoted one' }, {}, "template value '!cmd' missing"],
  ])('%s with nothing to put there is a bug, said as one', (template, values, quoted, message) => {
    expect(() => render(template, values, shellQuote, quoted)).toThrow(message);
  });
});

describe('loadTemplate', () => {
  it.each(['ifup.sh', 'ifdown.sh', 'uncloud-vm.service'])('reads templates/%s', (name) => {
    expect(loadTemplate(name)).toMatch(/\{\{[!a-zA-Z]/);
  });
});
