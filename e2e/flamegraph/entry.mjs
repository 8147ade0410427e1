// The page of pyroscope-flamegraph.mjs: Pyroscope's own published flame graph component
// (@pyroscope/flamegraph, React) drawing a flamebearer that the page is handed, after the
// published model (@pyroscope/models) has parsed it, as Pyroscope's UI does.
import React from 'react';
import { createRoot } from 'react-dom/client';
import { FlamegraphRenderer } from '@pyroscope/flamegraph';
import '@pyroscope/flamegraph/dist/index.css';
import { FlamebearerProfileSchema } from '@pyroscope/models';

window.drawProfile = (json) => {
  const profile = FlamebearerProfileSchema.parse(json);
  createRoot(document.getElementById('root')).render(
    React.createElement(FlamegraphRenderer, { profile, onlyDisplay: 'flamegraph', showToolbar: false }),
  );
  return { units: profile.metadata.units, sampleRate: profile.metadata.sampleRate };
};
