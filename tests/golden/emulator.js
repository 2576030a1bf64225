/** @type {AppTypes.Config} */
// OHIF viewer 3.13.2 configuration for project ohif-golden-team, written by `provision config`
// for the emulator (no sign-in). Regenerate it rather than editing it; it holds no secret.
window.config = {
  // The viewer is served at the root of its origin.
  routerBasename: '/',
  enableGoogleCloudAdapter: false,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  extensions: [],
  modes: [],
  showStudyList: true,
  defaultDataSourceName: 'primary',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'primary',
      configuration: {
        friendlyName: 'imaging/primary (emulator)',
        name: 'GCP',
        wadoUriRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        qidoRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        wadoRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/primary/dicomWeb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        // 'wadors': thumbnails are drawn from frames/1, which the viewer fetches anyway.
        // 'rendered' (google.js) adds a series-level /rendered call per series, answered
        // by a fallback to instance level where series level is not served.
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: false,
        dicomUploadEnabled: true,
        // Google expects the multipart Accept without quotes; unquoted it is also a
        // CORS-safelisted header, which saves one preflight per frame.
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'teaching.v2',
      configuration: {
        friendlyName: 'imaging/teaching.v2 (emulator)',
        name: 'GCP',
        wadoUriRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        qidoRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        wadoRoot: 'http://127.0.0.1:8765/v1/projects/ohif-golden-team/locations/us-central1/datasets/imaging/dicomStores/teaching.v2/dicomWeb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        // 'wadors': thumbnails are drawn from frames/1, which the viewer fetches anyway.
        // 'rendered' (google.js) adds a series-level /rendered call per series, answered
        // by a fallback to instance level where series level is not served.
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: false,
        dicomUploadEnabled: true,
        // Google expects the multipart Accept without quotes; unquoted it is also a
        // CORS-safelisted header, which saves one preflight per frame.
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
